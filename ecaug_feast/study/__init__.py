"""The research bench beside the product: ``ecaug experiment`` (issues 29 and 30).

``protocol`` (a committed file fixes every setting), ``registry`` (the methods), ``cell`` (one
(fraction, seed) through the product's jobs in a private workspace), ``report`` (paired intervals),
``run`` (the whole study). It imports jobs, never the synth / label / quality internals.
"""
