import CurlKit
import Glibc
import Synchronization
import SysKit

/// A store in an S3 bucket (AWS, Cloudflare R2, MinIO, moto): `s3://bucket/prefix`.
///
/// Requests are signed with SigV4. By default (`.auto`) object GET/PUT/HEAD — every request on
/// the read path — are signed by libcurl's CURLOPT_AWS_SIGV4; listings are signed by
/// `SigV4Signer`, because libcurl 7.88 signs a query string as written instead of in canonical
/// form, which breaks ListObjectsV2 with a `/` in the prefix (it is refused both encoded and raw
/// by AWS-style canonicalization). `.swift` and `.curl` force one signer for every request. Custom endpoints use path-style URLs (`http://host:port/bucket/key`);
/// AWS's own endpoint uses virtual-host style when the bucket name allows it. Retries, backoff and
/// the deadline are the same `RetryPolicy` as HTTPStore's.
public final class S3Store: ObjectStore {
    public enum Signing: Sendable { case auto, swift, curl }

    public let description: String
    public var traits: StoreTraits { StoreTraits(latency: .remote, listable: true, writable: true) }
    public let bucket: String
    /// Key prefix inside the bucket: empty or ending in `/`.
    public let prefix: String
    public let config: AWSConfig
    /// The CA bundle TLS is checked against (nil: the system store).
    public let caBundle: CABundle?
    let signing: Signing
    let client: CurlClient
    let retry: RetryRunner
    /// Scheme, Host header value and the path up to (and including) the bucket for path style.
    let scheme: String
    let host: String
    let basePath: String
    /// How query values are encoded: RFC 3986 with `/` as %2F (AWS, R2, MinIO), or with `/` left
    /// raw, which is what moto's signature check expects (it compares against the decoded query).
    /// Chosen per store on the first listing: a SignatureDoesNotMatch with %2F is retried once
    /// with raw slashes, and whichever the server accepts sticks.
    private let rawSlashQueries = Atomic<Bool>(false)

    public convenience init(url: String, options: StoreOptions) throws {
        try self.init(url: url, options: options, environment: AWSConfig.processEnvironment())
    }

    public init(url: String, options: StoreOptions, environment: [String: String], client: CurlClient? = nil,
                policy: RetryPolicy? = nil, signing: Signing = .auto) throws {
        guard url.hasPrefix("s3://") else {
            throw StoreError.failed(key: "", store: url, detail: "not an s3:// URL")
        }
        let rest = url.dropFirst("s3://".count)
        let slash = rest.firstIndex(of: "/")
        let bucket = String(slash.map { rest[..<$0] } ?? rest)
        guard !bucket.isEmpty else {
            throw StoreError.failed(key: "", store: url, detail: "no bucket in the URL (use s3://bucket/prefix)")
        }
        var pfx = slash.map { String(rest[rest.index(after: $0)...]) } ?? ""
        while pfx.hasPrefix("/") { pfx.removeFirst() }
        if !pfx.isEmpty && !pfx.hasSuffix("/") { pfx += "/" }
        self.bucket = bucket
        prefix = pfx
        description = url
        config = AWSConfig.resolve(options: options, environment: environment)
        self.signing = signing
        caBundle = try CABundle.resolve(option: options.caBundle, s3Profile: config.profileCABundle, s3: true,
                                        tls: config.endpoint.lowercased().hasPrefix("https://"), environment: environment, store: url)
        self.client = client ?? CurlClients.client(for: caBundle)
        retry = RetryRunner(policy: policy ?? RetryPolicy(deadline: options.requestDeadline), store: url)

        let ep = config.endpoint
        guard let sep = ep.range(of: "://") else {
            throw StoreError.failed(key: "", store: url, detail: "endpoint \(ep) is not a URL (http://host:port or https://host)")
        }
        let sch = String(ep[..<sep.lowerBound]).lowercased()
        let afterScheme = ep[sep.upperBound...]
        let pathStart = afterScheme.firstIndex(of: "/") ?? afterScheme.endIndex
        var authority = String(afterScheme[..<pathStart])
        let epPath = String(afterScheme[pathStart...])
        if (sch == "https" && authority.hasSuffix(":443")) || (sch == "http" && authority.hasSuffix(":80")) {
            authority = String(authority[..<authority.lastIndex(of: ":")!])
        }
        scheme = sch
        // Virtual-host style on AWS's own endpoints for DNS-safe bucket names; path style elsewhere.
        let dnsSafe = bucket.allSatisfy { ($0 >= "a" && $0 <= "z") || ($0 >= "0" && $0 <= "9") || $0 == "-" }
        if !config.customEndpoint && dnsSafe && environment["AWS_S3_FORCE_PATH_STYLE"] != "true" {
            host = bucket + "." + authority
            basePath = epPath
        } else {
            host = authority
            basePath = epPath + "/" + Remote.percentEncode(bucket, keepSlash: false)
        }
    }

    // MARK: requests

    /// One signed request; `objectKey` is the full key in the bucket (prefix included) or nil for
    /// the bucket itself.
    func send(_ method: HTTPMethod, objectKey: String?, query: [(String, String)] = [],
              body: [UInt8]? = nil, rawSlash: Bool, timeLeft: Double,
              extraHeaders: [(String, String)] = []) throws(CurlError) -> CurlResponse {
        var path = basePath
        if let k = objectKey { path += "/" + Remote.percentEncode(k, keepSlash: true) }
        if path.isEmpty { path = "/" }
        let q = SigV4Signer.canonicalQuery(query, keepSlash: rawSlash)
        let url = scheme + "://" + host + path + (q.isEmpty ? "" : "?" + q)
        var headers: [(String, String)] = []
        if method == .put { headers.append(("Content-Type", "application/octet-stream")) }
        if let k = objectKey, k.hasPrefix(prefix) {
            headers += Remote.cacheHeaders(method, key: String(k.dropFirst(prefix.count)))
        }
        headers += extraHeaders
        let payloadHash = body.map { Hex.encode(SHA256.hash($0)) } ?? SigV4Signer.emptyPayloadHash
        var request = CurlRequest(method: method, url: url, body: body, timeout: timeLeft)
        if let c = config.credentials {
            // Conditional and batch requests carry headers of their own: signed here, in Swift.
            let signer: Signing = signing != .auto ? signing : (query.isEmpty && extraHeaders.isEmpty ? .curl : .swift)
            switch signer {
            case .swift, .auto:
                let signer = SigV4Signer(accessKey: c.accessKeyID, secretKey: c.secretAccessKey,
                                         sessionToken: c.sessionToken, region: config.region)
                headers = signer.sign(method: method.rawValue, host: host, path: path, query: q, headers: headers,
                                      payloadHash: payloadHash, epoch: Int(time(nil)))
                headers.append(("Host", host))
            case .curl:
                // libcurl 7.88 does not add x-amz-content-sha256 itself; S3 requires it.
                headers.append(("x-amz-content-sha256", payloadHash))
                if let t = c.sessionToken { headers.append(("x-amz-security-token", t)) }
                request.sigv4 = CurlSigV4(accessKey: c.accessKeyID, secretKey: c.secretAccessKey, region: config.region)
            }
        }
        request.headers = headers.map { (name: $0.0, value: $0.1) }
        return try client.perform(request)
    }

    /// Maps a response to an attempt result, reading S3's XML error code.
    func judge(_ r: CurlResponse, key: String) -> AttemptResult<CurlResponse> {
        if (200...299).contains(r.status) { return .success(r) }
        let code = Self.xmlValue("Code", in: r.body)
        let message = Self.xmlValue("Message", in: r.body)
        let detail = "HTTP \(r.status)" + (code.map { " \($0)" } ?? "") + (message.map { ": \($0)" } ?? "")
        switch (r.status, code) {
        case (404, "NoSuchBucket"?):
            return .fatal(.failed(key: key, store: description,
                detail: "bucket \(bucket) does not exist at \(config.endpoint) (NoSuchBucket)"))
        case (404, _):
            return .skipMirror(.notFound(key: key, store: description))
        case (401, _), (403, _):
            let hint = code == "SignatureDoesNotMatch" ? " (wrong secret key or clock skew?)"
                : code == "InvalidAccessKeyId" ? " (unknown access key id)" : ""
            let who = config.credentials.map { " using credentials from \($0.source)" } ?? " with no credentials (unsigned request)"
            return .skipMirror(.denied(key: key, store: description, detail: detail + hint + who))
        case (400, "RequestTimeout"?):
            return .transient(detail)
        case (400, "ExpiredToken"?), (400, "InvalidToken"?), (400, "AuthorizationHeaderMalformed"?):
            return .skipMirror(.denied(key: key, store: description, detail: detail))
        case (let s, _) where Remote.isTransientStatus(s):
            return .transient(detail)
        default:
            return .fatal(.failed(key: key, store: description, detail: detail))
        }
    }

    func call(_ method: HTTPMethod, key: String, objectKey: String?, query: [(String, String)] = [],
              body: [UInt8]? = nil, runner: RetryRunner? = nil) throws(StoreError) -> CurlResponse {
        let slashInQuery = query.contains { $0.1.contains("/") }
        return try (runner ?? retry).run(key: key, bases: [config.endpoint]) { _, left in
            do throws(CurlError) {
                let raw = rawSlashQueries.load(ordering: .relaxed)
                let r = try self.send(method, objectKey: objectKey, query: query, body: body, rawSlash: raw, timeLeft: left)
                if slashInQuery, !raw, r.status == 403, Self.xmlValue("Code", in: r.body) == "SignatureDoesNotMatch" {
                    let alt = try self.send(method, objectKey: objectKey, query: query, body: body, rawSlash: true, timeLeft: left)
                    if alt.status != 403 { rawSlashQueries.store(true, ordering: .relaxed) }
                    if (200...299).contains(alt.status) { return self.judge(alt, key: key) }
                }
                return self.judge(r, key: key)
            } catch {
                return Remote.attempt(error, key: key, store: self.description, caBundle: self.caBundle)
            }
        }
    }

    // MARK: ObjectStore

    public func get(_ key: String) throws -> [UInt8] {
        try call(.get, key: key, objectKey: prefix + key).body
    }

    /// A GET under another retry policy (a probe with a short deadline).
    func get(_ key: String, policy: RetryPolicy) throws -> [UInt8] {
        try call(.get, key: key, objectKey: prefix + key, runner: RetryRunner(policy: policy, store: description)).body
    }

    public func put(_ key: String, _ bytes: [UInt8]) throws {
        _ = try call(.put, key: key, objectKey: prefix + key, body: bytes)
    }

    public func exists(_ key: String) throws -> Bool {
        let found: Bool
        do {
            _ = try call(.head, key: key, objectKey: prefix + key)
            found = true
        } catch {
            guard error.isNotFound else { throw error }
            found = false
        }
        return found
    }

    /// ListObjectsV2, following continuation tokens (S3 returns at most 1000 keys a page).
    public func list(prefix: String) throws -> [String] {
        var out: [String] = []
        var token: String?
        let full = self.prefix + prefix
        repeat {
            var q: [(String, String)] = [("list-type", "2"), ("prefix", full)]
            if let t = token { q.append(("continuation-token", t)) }
            let r = try call(.get, key: prefix, objectKey: nil, query: q)
            for k in Self.xmlValues("Key", in: r.body) where k.hasPrefix(self.prefix) {
                out.append(String(k.dropFirst(self.prefix.count)))
            }
            token = Self.xmlValue("IsTruncated", in: r.body) == "true" ? Self.xmlValue("NextContinuationToken", in: r.body) : nil
        } while token != nil
        return out
    }

    /// Creates the bucket (for tests and first-time setup); an existing bucket of ours is fine.
    public func createBucket() throws {
        do {
            _ = try call(.put, key: "", objectKey: nil, body: [])
        } catch {
            if case .failed(_, _, let d) = error, d.contains("BucketAlreadyOwnedByYou") { return }
            throw error
        }
    }

    // MARK: XML (S3 responses are small and flat: plain tag scanning suffices)

    static func xmlValues(_ tag: String, in body: [UInt8]) -> [String] {
        let text = String(decoding: body, as: UTF8.self)
        let open = "<\(tag)>", close = "</\(tag)>"
        var out: [String] = []
        var rest = text[...]
        while let a = rest.range(of: open) {
            guard let b = rest[a.upperBound...].range(of: close) else { break }
            out.append(xmlUnescape(String(rest[a.upperBound..<b.lowerBound])))
            rest = rest[b.upperBound...]
        }
        return out
    }

    static func xmlValue(_ tag: String, in body: [UInt8]) -> String? { xmlValues(tag, in: body).first }

    static func xmlUnescape(_ s: String) -> String {
        guard s.contains("&") else { return s }
        var out = ""
        var i = s.startIndex
        while i < s.endIndex {
            if s[i] == "&", let semi = s[i...].firstIndex(of: ";") {
                let ent = s[s.index(after: i)..<semi]
                var rep: String?
                switch ent {
                case "amp": rep = "&"
                case "lt": rep = "<"
                case "gt": rep = ">"
                case "quot": rep = "\""
                case "apos": rep = "'"
                default:
                    if ent.hasPrefix("#x"), let v = UInt32(ent.dropFirst(2), radix: 16), let u = Unicode.Scalar(v) { rep = String(Character(u)) }
                    else if ent.hasPrefix("#"), let v = UInt32(ent.dropFirst()), let u = Unicode.Scalar(v) { rep = String(Character(u)) }
                }
                if let rep {
                    out += rep
                    i = s.index(after: semi)
                    continue
                }
            }
            out.append(s[i])
            i = s.index(after: i)
        }
        return out
    }
}

extension StringProtocol {
    func range(of needle: String) -> Range<Index>? {
        guard !needle.isEmpty else { return nil }
        var i = startIndex
        while i < endIndex {
            if self[i...].hasPrefix(needle) { return i..<index(i, offsetBy: needle.count) }
            i = index(after: i)
        }
        return nil
    }
}
