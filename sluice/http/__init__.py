"""HTTP pieces the API and the SFU share: auth, body limits, error rendering, probes."""
