import SysKit

/// HMAC-SHA256 over SysKit's SHA-256 (RFC 2104).
enum HMACSHA256 {
    static func mac(key: [UInt8], _ message: [UInt8]) -> [UInt8] {
        var k = key.count > 64 ? SHA256.hash(key) : key
        k += [UInt8](repeating: 0, count: 64 - k.count)
        let inner = SHA256.hash(k.map { $0 ^ 0x36 } + message)
        return SHA256.hash(k.map { $0 ^ 0x5c } + inner)
    }
}

/// AWS Signature Version 4 for S3 requests, computed in Swift.
///
/// libcurl 7.88's CURLOPT_AWS_SIGV4 signs the query string as written instead of in canonical
/// form, so a list request whose `prefix` contains `/` cannot be signed correctly for AWS by
/// libcurl (see S3Store). This signer builds the canonical request itself: query parameters
/// sorted and RFC 3986-encoded (`/` as %2F), the path encoded once, and the URL sent is built
/// from the same encoded pieces, so what is signed is exactly what goes on the wire.
public struct SigV4Signer: Sendable {
    public var accessKey: String
    public var secretKey: String
    public var sessionToken: String?
    public var region: String
    public var service: String

    public init(accessKey: String, secretKey: String, sessionToken: String? = nil, region: String, service: String = "s3") {
        self.accessKey = accessKey
        self.secretKey = secretKey
        self.sessionToken = sessionToken
        self.region = region
        self.service = service
    }

    public static let emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    /// The canonical query string (sorted, encoded); also the query to send.
    /// `keepSlash` leaves `/` raw in values, for servers that check against the decoded query.
    public static func canonicalQuery(_ params: [(String, String)], keepSlash: Bool = false) -> String {
        params.map { (Remote.percentEncode($0.0, keepSlash: false), Remote.percentEncode($0.1, keepSlash: keepSlash)) }
            .sorted { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }
            .map { "\($0.0)=\($0.1)" }
            .joined(separator: "&")
    }

    /// `YYYYMMDDTHHMMSSZ` for seconds since the epoch (UTC).
    public static func amzDate(_ epoch: Int) -> String {
        let days = epoch >= 0 ? epoch / 86400 : (epoch - 86399) / 86400
        let secs = epoch - days * 86400
        // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        let y = yoe + era * 400 + (m <= 2 ? 1 : 0)
        func two(_ v: Int) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(y)\(two(m))\(two(d))T\(two(secs / 3600))\(two(secs / 60 % 60))\(two(secs % 60))Z"
    }

    /// Headers to send for a request: the given ones plus x-amz-date, x-amz-content-sha256,
    /// x-amz-security-token (with a session token) and Authorization. `host` is the Host header
    /// value (with the port unless it is the scheme's default); `path` is already encoded.
    public func sign(method: String, host: String, path: String, query: String,
                     headers: [(String, String)], payloadHash: String, epoch: Int) -> [(String, String)] {
        let date = Self.amzDate(epoch)
        var all: [(String, String)] = headers
        all.append(("host", host))
        all.append(("x-amz-date", date))
        all.append(("x-amz-content-sha256", payloadHash))
        if let t = sessionToken { all.append(("x-amz-security-token", t)) }
        let canon = all.map { ($0.0.lowercased(), $0.1.trimmingSpaces()) }.sorted { $0.0 < $1.0 }
        let signedHeaders = canon.map(\.0).joined(separator: ";")
        let canonicalRequest = [
            method, path, query,
            canon.map { "\($0.0):\($0.1)\n" }.joined(),
            signedHeaders, payloadHash,
        ].joined(separator: "\n")
        let day = String(date.prefix(8))
        let scope = "\(day)/\(region)/\(service)/aws4_request"
        let stringToSign = ["AWS4-HMAC-SHA256", date, scope, Hex.encode(SHA256.hash(Array(canonicalRequest.utf8)))].joined(separator: "\n")
        var k = HMACSHA256.mac(key: Array(("AWS4" + secretKey).utf8), Array(day.utf8))
        k = HMACSHA256.mac(key: k, Array(region.utf8))
        k = HMACSHA256.mac(key: k, Array(service.utf8))
        k = HMACSHA256.mac(key: k, Array("aws4_request".utf8))
        let signature = Hex.encode(HMACSHA256.mac(key: k, Array(stringToSign.utf8)))
        var out = all.filter { $0.0 != "host" }
        out.append(("Authorization", "AWS4-HMAC-SHA256 Credential=\(accessKey)/\(scope), SignedHeaders=\(signedHeaders), Signature=\(signature)"))
        return out
    }
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while s.first == " " || s.first == "\t" { s = s.dropFirst() }
        while s.last == " " || s.last == "\t" { s = s.dropLast() }
        return String(s)
    }
}
