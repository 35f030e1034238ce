import SysKit

/// Settings that apply to remote stores; a directory store ignores them.
public struct StoreOptions: Codable, Sendable, Equatable {
    /// S3 endpoint (R2, MinIO); otherwise `AWS_ENDPOINT_URL`, otherwise AWS.
    public var endpoint: String?
    /// S3 region; otherwise `AWS_REGION`/`AWS_DEFAULT_REGION`/profile, otherwise `us-east-1`.
    public var region: String?
    /// Extra base URLs holding the same layout, tried in order when the first fails (http stores).
    public var mirrors: [String] = []
    /// A request that cannot complete within this many seconds, retries included, fails.
    public var requestDeadline: Double = 60
    /// A PEM file of CAs to trust for TLS (`--ca-bundle`); see `CABundle` for the precedence.
    public var caBundle: String?

    public init() {}
}

public enum StoreFactory {
    /// Opens the store a user named: `file:///dir`, a plain path, `s3://bucket/prefix`,
    /// `http://…` or `https://…`.
    public static func open(_ spec: String, options: StoreOptions = StoreOptions()) throws -> ObjectStore {
        if spec.hasPrefix("s3://") { return try S3Store(url: spec, options: options) }
        if spec.hasPrefix("http://") || spec.hasPrefix("https://") { return try HTTPStore(urls: [spec], options: options) }
        var path = spec
        if spec.hasPrefix("file://") {
            path = String(spec.dropFirst("file://".count))
            guard path.hasPrefix("/") else { throw StoreError.failed(key: "", store: spec, detail: "file:// URLs need an absolute path (file:///dir)") }
        } else if spec.contains("://") {
            throw StoreError.failed(key: "", store: spec, detail: "unknown store scheme (use a path, file://, s3://, http:// or https://)")
        }
        return DirectoryStore(root: path, description: spec)
    }
}
