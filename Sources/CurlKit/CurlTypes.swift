// CurlKit: blocking HTTP requests over libcurl easy handles, safe to call from many threads.
// The only place in envmount's store layer that touches C pointers.

/// HTTP methods the stores use.
public enum HTTPMethod: String, Sendable {
    case get = "GET"
    case put = "PUT"
    case head = "HEAD"
    /// S3 DeleteObjects (`POST ?delete` with an XML body).
    case post = "POST"
    case delete = "DELETE"
}

/// Credentials and scope for libcurl's own SigV4 signer (`CURLOPT_AWS_SIGV4`).
public struct CurlSigV4: Sendable, Equatable {
    public var accessKey: String
    public var secretKey: String
    public var region: String
    public var service: String

    public init(accessKey: String, secretKey: String, region: String, service: String = "s3") {
        self.accessKey = accessKey
        self.secretKey = secretKey
        self.region = region
        self.service = service
    }
}

public struct CurlRequest: Sendable {
    public var method: HTTPMethod
    public var url: String
    /// Header fields in order; a name given twice is sent twice.
    public var headers: [(name: String, value: String)]
    /// Request body (PUT). Sent with the exact length given; no `Expect: 100-continue`.
    public var body: [UInt8]?
    /// Inclusive byte range (`Range: bytes=a-b`).
    public var range: ClosedRange<UInt64>?
    /// Let libcurl sign the request. Callers that sign themselves add the headers instead.
    public var sigv4: CurlSigV4?
    /// This request may take at most this many seconds in all (overrides the client's setting
    /// when smaller); a retry loop passes the time left before its deadline.
    public var timeout: Double?

    public init(method: HTTPMethod, url: String, headers: [(name: String, value: String)] = [],
                body: [UInt8]? = nil, range: ClosedRange<UInt64>? = nil, sigv4: CurlSigV4? = nil,
                timeout: Double? = nil) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.range = range
        self.sigv4 = sigv4
        self.timeout = timeout
    }
}

public struct CurlResponse: Sendable {
    public var status: Int
    /// Response header fields of the final response, names as sent.
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public init(status: Int, headers: [(name: String, value: String)], body: [UInt8]) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// The first header with this name, compared case-insensitively.
    public func header(_ name: String) -> String? {
        let n = name.lowercased()
        return headers.first { $0.name.lowercased() == n }?.value
    }
}

/// A transfer that did not produce an HTTP response, classified for retry decisions.
public struct CurlError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: String, Sendable {
        /// The host name did not resolve (or the proxy's did not).
        case dns
        /// TCP connect refused or unreachable.
        case connect
        /// TLS handshake or certificate failure.
        case tls
        /// Connect, low-speed or total timeout.
        case timeout
        /// The peer reset or closed the connection, or the send/receive failed.
        case reset
        /// The body ended before Content-Length (or chunked framing) said it would.
        case truncated
        /// The URL or an option is malformed.
        case invalid
        /// Anything else libcurl reports.
        case other
    }

    public var kind: Kind
    /// libcurl's CURLcode.
    public var code: Int
    /// libcurl's error text (the detailed error buffer when there is one).
    public var message: String
    public var url: String

    public init(kind: Kind, code: Int, message: String, url: String) {
        self.kind = kind
        self.code = code
        self.message = message
        self.url = url
    }

    /// Whether trying again (later, or on another mirror) may succeed.
    public var isTransient: Bool {
        switch kind {
        case .dns, .connect, .timeout, .reset, .truncated, .other: return true
        case .tls, .invalid: return false
        }
    }

    public var description: String { "\(kind.rawValue) error (curl \(code)): \(message)" }
}

/// Connection and transfer settings for a client.
public struct CurlSettings: Sendable {
    /// Seconds to establish TCP (and TLS).
    public var connectTimeout: Double = 10
    /// A transfer slower than `lowSpeedLimit` bytes/s for `lowSpeedTime` seconds is aborted.
    public var lowSpeedLimit: Int = 1024
    public var lowSpeedTime: Int = 15
    /// Upper bound for one request, in seconds (0: none).
    public var totalTimeout: Double = 300
    /// Negotiate HTTP/2 over TLS where the server offers it (plain http stays HTTP/1.1).
    public var http2: Bool = true
    /// Idle easy handles kept for reuse (each keeps its own live connections).
    public var maxIdleHandles: Int = 64
    /// Share the connection cache between handles through the curl share object. Off by default:
    /// libcurl documents sharing connections between concurrently running threads as unsupported
    /// (CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT); DNS and TLS sessions are always shared.
    public var shareConnections: Bool = false
    /// Verify TLS certificates (keep on; for tests against self-signed servers only).
    public var verifyTLS: Bool = true
    /// A PEM file of the certificate authorities to trust instead of the system store
    /// (`CURLOPT_CAINFO`, with the CA path switched off so only this file counts).
    public var caBundle: String?

    public init() {}
}
