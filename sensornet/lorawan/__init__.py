"""LoRaWAN: network-server envelopes (ChirpStack v4, The Things Stack v3), payload codecs
(CayenneLPP, fixed binary layouts) and the key map from decoded payloads to catalogue
quantities. Pure: no I/O (docs/inputs/lorawan.md)."""
