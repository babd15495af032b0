"""Robustness: adversarial attacks, robust accuracy, and the ``robustness`` check.

Methods: the attack contract (``base``: an :class:`~audit.robustness.base.Attack` subclass
writes ``run()``), our attacks (``pgd``, ``apgd``, ``square``, ``mifgsm``) and foolbox's
(``foolbox_attacks``), all re-exported by ``attacks``; robust accuracy curves (``evaluate``),
gradient-masking diagnostics (``diagnostics``), common corruptions (``corruptions``).

The check, in the shape of every area: ``params`` (settings), ``suite`` (the attacks run, as
data), ``measure`` -> ``evaluation`` (the typed result), ``findings`` (pure rules),
``section`` with ``tables`` and ``figures``, and the thin ``check``. The adversarial
training losses live beside them.
"""
