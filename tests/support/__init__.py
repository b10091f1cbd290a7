"""What the tests share: fakes, signed requests, running servers."""
