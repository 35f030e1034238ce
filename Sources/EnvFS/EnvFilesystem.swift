enum EnvFSPlaceholder {}
