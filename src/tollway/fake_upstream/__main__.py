"""``python -m tollway.fake_upstream``: the fake upstream on its own."""

from tollway.fake_upstream.server import main

main()
