"""The learned (SOFTNet) spotter: its flow-window input and pseudo-labels (`windows`), the
network's training and scoring (`spotter`), and both as commands over a corpus (`run`)."""
