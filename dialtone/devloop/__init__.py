"""`dialtone dev`: the dev session, the tunnel, pointing the number and putting it back, the
reloadable app process, the console."""
