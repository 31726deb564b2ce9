"""The parts assembled from settings, the demo and the local services (Mosquitto,
InfluxDB as processes): the layer between the command line and the product's parts."""
