"""Applications: the top layer, built on the library (examples, harden, mitigate); nothing in
the library imports them."""
