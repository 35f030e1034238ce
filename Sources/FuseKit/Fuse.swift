enum FuseKitPlaceholder {}
