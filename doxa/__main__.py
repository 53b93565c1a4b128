from doxa.cli import entry_point

entry_point()
