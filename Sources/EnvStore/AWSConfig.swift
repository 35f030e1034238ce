import Glibc
import SysKit

/// Credentials for signing S3 requests.
public struct AWSCredentials: Sendable, Equatable {
    public var accessKeyID: String
    public var secretAccessKey: String
    public var sessionToken: String?
    /// Where they came from, for messages ("environment", "~/.aws/credentials [dev]").
    public var source: String

    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil, source: String) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
        self.source = source
    }
}

/// S3 settings resolved the way the AWS CLI and SDKs do.
///
/// - credentials: `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`), else the
///   profile (`AWS_PROFILE`, default "default") in the shared credentials file
///   (`AWS_SHARED_CREDENTIALS_FILE`, default `~/.aws/credentials`), else in the config file
///   (`AWS_CONFIG_FILE`, default `~/.aws/config`, sections `[profile NAME]` or `[default]`);
///   none: requests go unsigned (public buckets).
/// - region: `StoreOptions.region`, `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile's `region`,
///   else `us-east-1` (R2 wants `auto`).
/// - endpoint: `StoreOptions.endpoint`, `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, the profile's
///   `endpoint_url`, else `https://s3.REGION.amazonaws.com`.
public struct AWSConfig: Sendable, Equatable {
    public var credentials: AWSCredentials?
    public var region: String
    /// Endpoint URL without a trailing slash.
    public var endpoint: String
    /// Whether the endpoint was chosen by the user (R2, MinIO, moto) rather than AWS's default.
    public var customEndpoint: Bool
    public var profile: String
    /// The profile's `ca_bundle` (AWS CLI setting), with where it was read.
    public var profileCABundle: CABundle?

    public static func resolve(options: StoreOptions, environment env: [String: String] = AWSConfig.processEnvironment()) -> AWSConfig {
        let profile = nonEmpty(env["AWS_PROFILE"]) ?? "default"
        let home = nonEmpty(env["HOME"]) ?? "/root"
        let credPath = nonEmpty(env["AWS_SHARED_CREDENTIALS_FILE"]) ?? home + "/.aws/credentials"
        let confPath = nonEmpty(env["AWS_CONFIG_FILE"]) ?? home + "/.aws/config"
        let credFile = INIFile.load(credPath)
        let confFile = INIFile.load(confPath)
        let credSection = credFile[profile]
        let confSection = confFile[profile == "default" ? "default" : "profile " + profile] ?? confFile[profile]

        var creds: AWSCredentials?
        if let id = nonEmpty(env["AWS_ACCESS_KEY_ID"]), let secret = nonEmpty(env["AWS_SECRET_ACCESS_KEY"]) {
            creds = AWSCredentials(accessKeyID: id, secretAccessKey: secret, sessionToken: nonEmpty(env["AWS_SESSION_TOKEN"]), source: "environment")
        } else {
            for (section, path) in [(credSection, credPath), (confSection, confPath)] {
                if let s = section, let id = nonEmpty(s["aws_access_key_id"]), let secret = nonEmpty(s["aws_secret_access_key"]) {
                    creds = AWSCredentials(accessKeyID: id, secretAccessKey: secret, sessionToken: nonEmpty(s["aws_session_token"]),
                                           source: "\(path) [\(profile)]")
                    break
                }
            }
        }
        let region = nonEmpty(options.region) ?? nonEmpty(env["AWS_REGION"]) ?? nonEmpty(env["AWS_DEFAULT_REGION"])
            ?? nonEmpty(confSection?["region"]) ?? "us-east-1"
        var endpoint = nonEmpty(options.endpoint) ?? nonEmpty(env["AWS_ENDPOINT_URL_S3"]) ?? nonEmpty(env["AWS_ENDPOINT_URL"])
            ?? nonEmpty(confSection?["endpoint_url"])
        let custom = endpoint != nil
        if endpoint == nil { endpoint = "https://s3.\(region).amazonaws.com" }
        var e = endpoint!
        while e.hasSuffix("/") { e.removeLast() }
        let ca = nonEmpty(confSection?["ca_bundle"]).map { CABundle(path: $0, source: "ca_bundle in \(confPath) [\(profile)]") }
        return AWSConfig(credentials: creds, region: region, endpoint: e, customEndpoint: custom, profile: profile, profileCABundle: ca)
    }

    /// The process environment as a dictionary.
    public static func processEnvironment() -> [String: String] {
        var out: [String: String] = [:]
        var i = 0
        while let p = environ[i] {
            let s = String(cString: p)
            if let eq = s.firstIndex(of: "=") { out[String(s[..<eq])] = String(s[s.index(after: eq)...]) }
            i += 1
        }
        return out
    }

    static func nonEmpty(_ s: String?) -> String? {
        guard let s, !s.isEmpty else { return nil }
        return s
    }
}

/// The INI dialect of ~/.aws/credentials and ~/.aws/config: `[section]`, `key = value`, `#`/`;`
/// comments. Nested (indented) sub-sections are skipped.
struct INIFile {
    var sections: [String: [String: String]] = [:]

    subscript(name: String) -> [String: String]? { sections[name] }

    static func load(_ path: String) -> INIFile {
        guard let bytes = try? FS.readFile(path) else { return INIFile() }
        return parse(String(decoding: bytes, as: UTF8.self))
    }

    static func parse(_ text: String) -> INIFile {
        var f = INIFile()
        var current: String?
        for raw in text.split(whereSeparator: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" }) {
            let indented = raw.first == " " || raw.first == "\t"
            let line = String(raw).trimmingSpaces()
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") && line.hasSuffix("]") {
                current = String(line.dropFirst().dropLast()).trimmingSpaces()
                if let c = current, f.sections[c] == nil { f.sections[c] = [:] }
                continue
            }
            guard !indented, let c = current, let eq = line.firstIndex(of: "=") else { continue }
            let k = String(line[..<eq]).trimmingSpaces().lowercased()
            let v = String(line[line.index(after: eq)...]).trimmingSpaces()
            f.sections[c]?[k] = v
        }
        return f
    }
}
