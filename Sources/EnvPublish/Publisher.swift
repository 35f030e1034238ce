enum EnvPublishPlaceholder {}
