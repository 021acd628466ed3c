"""OGC Application Packages whose execution unit is CWL."""
