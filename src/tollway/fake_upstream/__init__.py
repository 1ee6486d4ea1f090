"""The built-in fake upstream: a real HTTP server speaking every provider's wire format, chosen by model name
(``fake/echo``, ``fake/slow?ms=2000`` …). The demo (``make run``), ``tollway fake-upstream``, the tests and the bench
run against it; no product layer imports it."""
