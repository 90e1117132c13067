"""The endpoint: dials out to the bridge, runs plugin requests on worker threads."""
