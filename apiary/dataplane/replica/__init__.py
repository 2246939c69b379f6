"""What every data-plane route runs with: the replica's context and admission control, the
request-body base, shared route helpers, and the client of the control plane's API."""
