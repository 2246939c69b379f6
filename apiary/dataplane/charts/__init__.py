"""Charts: saved chart definitions (HoneyHive ``/v1/charts``) and chart data over HTTP."""
