import numpy as np

from mekit.motion.cache import FeatureCache


def test_cache_roundtrip_and_key_sensitivity(tmp_path):
    cache = FeatureCache(tmp_path)
    key = cache.key({"frame": "abc", "flow": {"method": "tvl1"}})
    assert key == cache.key({"flow": {"method": "tvl1"}, "frame": "abc"})  # order-free
    assert key != cache.key({"frame": "abc", "flow": {"method": "farneback"}})
    assert cache.load(key) is None
    array = np.arange(12, dtype=np.float32).reshape(3, 2, 2)
    cache.save(key, array)
    assert np.array_equal(cache.load(key), array)
    assert not list(tmp_path.rglob("*.tmp"))  # atomic write leaves no temp file


def test_corrupt_entry_reads_as_missing(tmp_path):
    cache = FeatureCache(tmp_path)
    key = cache.key({"x": 1})
    cache.save(key, np.zeros(3))
    next(tmp_path.rglob("*.npy")).write_bytes(b"garbage")
    assert cache.load(key) is None
