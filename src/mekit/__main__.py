from mekit.cli.main import main

raise SystemExit(main())
