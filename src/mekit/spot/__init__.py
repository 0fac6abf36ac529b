"""Spotting: find the apex inside a clip and the micro- and macro-expressions in a long video."""
