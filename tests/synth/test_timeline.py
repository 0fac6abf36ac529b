import numpy as np

from mekit.synth.timeline import blink_profile, expression_profile, head_shift, head_track


def test_expression_profile_rises_to_apex_and_falls_to_residual():
    p = expression_profile(40, onset=5, apex=15, offset=30, residual=0.25)
    assert (p[:6] == 0).all()
    assert p[15] == 1.0 and p.max() == 1.0
    assert (np.diff(p[5:16]) > 0).all()
    assert (np.diff(p[15:31]) < 0).all()
    np.testing.assert_allclose(p[30:], 0.25)
    # Raised cosine: half way up at the midpoint of the rise.
    assert abs(p[10] - 0.5) < 1e-9


def test_blink_profile_is_zero_outside_its_span():
    p = blink_profile(50, start=10, length=10, closure=0.8)
    assert (p[:11] == 0).all() and (p[20:] == 0).all()
    assert abs(p.max() - 0.8) < 1e-9
    assert np.argmax(p) == 14  # closes over 40 % of the span


def test_head_track_is_bounded_smooth_and_starts_at_rest():
    rng = np.random.default_rng(3)
    track = head_track(rng, 200, drift_px=1.5, rotation_deg=0.4, smooth=40)
    assert track.shape == (200, 3)
    assert (track[0] == 0).all()
    assert np.hypot(track[:, 0], track[:, 1]).max() <= 1.5 + 1e-9
    assert np.abs(track[:, 2]).max() <= 0.4 + 1e-9
    assert np.hypot(track[:, 0], track[:, 1]).max() > 0.3  # it does move
    assert np.abs(np.diff(track[:, 0])).max() < 0.2  # slowly


def test_head_shift_reaches_and_holds_its_vector():
    s = head_shift(30, start=5, length=10, vector=(3.0, -1.0))
    assert (s[:6] == 0).all()
    np.testing.assert_allclose(s[15:], [[3.0, -1.0]] * 15)
