enum CurlKitPlaceholder {}
