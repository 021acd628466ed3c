"""Earth-observation pieces: the water-bodies steps (crop, normalized difference, Otsu, STAC), reading STAC
items under the network policy, Planetary Computer signing, staging a STAC catalog out to results storage,
and a synthetic Landsat-like data generator."""
