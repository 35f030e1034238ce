import CurlKit

/// A read-only store over plain HTTP(S): a public bucket, a CDN, nginx serving a directory
/// store's tree. `get` is `GET base/key`, `exists` is `HEAD`; listing is impossible over plain
/// HTTP and the mount never needs it. Mirrors holding the same layout are tried in order.
/// Bodies are returned as received: chunk verification happens above the store.
public final class HTTPStore: ObjectStore {
    public let description: String
    public var traits: StoreTraits { StoreTraits(latency: .remote, listable: false, writable: false) }
    /// Base URLs without a trailing slash: the primary first, then mirrors.
    public let bases: [String]
    let client: CurlClient
    let retry: RetryRunner

    /// The CA bundle TLS is checked against (nil: the system store), for messages.
    let caBundle: CABundle?

    /// Picks the CA bundle from `options.caBundle`, `CURL_CA_BUNDLE` or `SSL_CERT_FILE` (see
    /// `CABundle`); a bundle that cannot be read is an error naming it.
    public convenience init(urls: [String], options: StoreOptions,
                            environment: [String: String] = AWSConfig.processEnvironment()) throws {
        let store = urls.first ?? "http://"
        let tls = (urls + options.mirrors).contains { $0.lowercased().hasPrefix("https://") }
        let bundle = try CABundle.resolve(option: options.caBundle, s3Profile: nil, s3: false, tls: tls, environment: environment, store: store)
        self.init(urls: urls, options: options, client: CurlClients.client(for: bundle),
                  policy: RetryPolicy(deadline: options.requestDeadline), caBundle: bundle)
    }

    public init(urls: [String], options: StoreOptions, client: CurlClient, policy: RetryPolicy, caBundle: CABundle? = nil) {
        self.caBundle = caBundle
        var seen = Set<String>()
        var list: [String] = []
        for u in urls + options.mirrors {
            let b = u.hasSuffix("/") ? String(u.dropLast()) : u
            if seen.insert(b).inserted { list.append(b) }
        }
        bases = list
        description = urls.first ?? "http://"
        self.client = client
        retry = RetryRunner(policy: policy, store: description)
    }

    func url(_ base: String, _ key: String) -> String { base + "/" + Remote.percentEncode(key, keepSlash: true) }

    private func attempt(_ method: HTTPMethod, _ base: String, _ key: String, _ timeLeft: Double) -> AttemptResult<CurlResponse> {
        let r: CurlResponse
        do {
            r = try client.perform(CurlRequest(method: method, url: url(base, key),
                                               headers: Remote.cacheHeaders(method, key: key).map { (name: $0.0, value: $0.1) },
                                               timeout: timeLeft))
        } catch {
            return Remote.attempt(error, key: key, store: description, caBundle: caBundle)
        }
        switch r.status {
        case 200...299:
            return .success(r)
        case 404, 410:
            return .skipMirror(.notFound(key: key, store: description))
        case 401, 403:
            return .skipMirror(.denied(key: key, store: description, detail: "\(base): HTTP \(r.status)"))
        case let s where Remote.isTransientStatus(s):
            return .transient("HTTP \(s) from \(base)")
        default:
            return .skipMirror(.failed(key: key, store: description, detail: "\(base): HTTP \(r.status) \(Remote.excerpt(r.body))"))
        }
    }

    private func request(_ method: HTTPMethod, _ key: String, runner: RetryRunner? = nil) throws(StoreError) -> CurlResponse {
        try (runner ?? retry).run(key: key, bases: bases) { base, left in self.attempt(method, base, key, left) }
    }

    /// A GET under another retry policy (a probe with a short deadline).
    func get(_ key: String, policy: RetryPolicy) throws -> [UInt8] {
        try request(.get, key, runner: RetryRunner(policy: policy, store: description)).body
    }

    public func get(_ key: String) throws -> [UInt8] {
        try request(.get, key).body
    }

    public func exists(_ key: String) throws -> Bool {
        let found: Bool
        do {
            _ = try request(.head, key)
            found = true
        } catch {
            guard error.isNotFound else { throw error }
            found = false
        }
        return found
    }

    public func put(_ key: String, _ bytes: [UInt8]) throws {
        throw StoreError.readOnly(store: description)
    }

    public func list(prefix: String) throws -> [String] {
        throw StoreError.failed(key: prefix, store: description,
            detail: "an http(s) store cannot be listed (plain HTTP has no listing); mounting needs no listing, publishing and listing need a directory or s3:// store")
    }
}
