enum EnvCachePlaceholder {}
