"""HTTP foundations both planes use: errors as responses, OpenAPI documents that say what
an app really answers, request bodies read within limits."""
