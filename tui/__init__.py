"""dester-harden's faces: the command line (tui.cli) and the Textual assistant.

Importing this package must stay cheap: the audit path never imports textual.
"""
