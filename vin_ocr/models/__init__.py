"""Model families behind one small protocol (see ``base.py``); one module per family."""
