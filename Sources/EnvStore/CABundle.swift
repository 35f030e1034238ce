import CurlKit
import Synchronization
import SysKit

/// The certificate authorities a remote store's TLS connections are checked against.
///
/// Precedence, first match wins (the AWS CLI's and curl's conventions):
///
/// 1. `--ca-bundle FILE` (`StoreOptions.caBundle`);
/// 2. `AWS_CA_BUNDLE` — s3:// stores only;
/// 3. `ca_bundle` in the AWS profile (`~/.aws/config`, `AWS_CONFIG_FILE`, `AWS_PROFILE`) — s3:// only;
/// 4. `CURL_CA_BUNDLE`;
/// 5. `SSL_CERT_FILE`;
/// 6. the system store (libcurl's default, `/etc/ssl/certs`).
///
/// The AWS settings are scoped to S3 as the AWS CLI scopes them, so an `AWS_CA_BUNDLE` made for an
/// internal MinIO does not stop a public https:// mirror from verifying. A chosen bundle is the
/// whole trust set (libcurl's CA path is switched off), as in the AWS CLI and Python's requests:
/// to trust a private CA beside the public ones, concatenate both into one file.
public struct CABundle: Sendable, Equatable, CustomStringConvertible {
    /// The PEM file.
    public var path: String
    /// Where the choice came from, for messages: "--ca-bundle", "AWS_CA_BUNDLE", …
    public var source: String

    public init(path: String, source: String) {
        self.path = path
        self.source = source
    }

    public var description: String { "\(path) (from \(source))" }

    /// The bundle for a store, by the precedence above; nil means the system store. A named file
    /// that cannot be read, or holds no PEM certificate, is an error naming it and its source.
    /// A store reached without TLS (`tls` false) ignores the environment's settings, so a stale
    /// SSL_CERT_FILE cannot break an http:// mount; `--ca-bundle` is checked regardless.
    public static func resolve(option: String?, s3Profile: CABundle?, s3: Bool, tls: Bool = true,
                               environment env: [String: String], store: String) throws(StoreError) -> CABundle? {
        var chosen: CABundle?
        if let o = nonEmpty(option) {
            chosen = CABundle(path: o, source: "--ca-bundle")
        } else if !tls {
            return nil
        } else if s3, let e = nonEmpty(env["AWS_CA_BUNDLE"]) {
            chosen = CABundle(path: e, source: "AWS_CA_BUNDLE")
        } else if s3, let p = s3Profile {
            chosen = p
        } else if let e = nonEmpty(env["CURL_CA_BUNDLE"]) {
            chosen = CABundle(path: e, source: "CURL_CA_BUNDLE")
        } else if let e = nonEmpty(env["SSL_CERT_FILE"]) {
            chosen = CABundle(path: e, source: "SSL_CERT_FILE")
        }
        guard var bundle = chosen else { return nil }
        if !bundle.path.hasPrefix("/"), let cwd = try? FS.realpath(".") { bundle.path = cwd + "/" + bundle.path }
        let bytes: [UInt8]
        do { bytes = try FS.readFile(bundle.path) } catch {
            throw StoreError.failed(key: "", store: store, detail: "CA bundle \(bundle) cannot be read: \(error)")
        }
        guard String(decoding: bytes, as: UTF8.self).contains("-----BEGIN CERTIFICATE-----") else {
            throw StoreError.failed(key: "", store: store, detail: "CA bundle \(bundle) holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
        }
        return bundle
    }

    /// Text for a TLS failure: what the certificate was checked against and how to change it.
    static func tlsHint(_ bundle: CABundle?) -> String {
        let against = bundle.map { "checked against the CA bundle \($0)" } ?? "checked against the system CA store"
        return "\(against); for a private CA give its certificate with --ca-bundle FILE "
            + "(or AWS_CA_BUNDLE / the AWS profile's ca_bundle for s3://, CURL_CA_BUNDLE, SSL_CERT_FILE)"
    }

    static func nonEmpty(_ s: String?) -> String? {
        guard let s, !s.isEmpty else { return nil }
        return s
    }
}

/// One long-lived client per CA bundle, so stores opened with the same bundle share connections
/// and TLS sessions (the system store's is `CurlClient.shared`).
enum CurlClients {
    private static let byBundle = Mutex<[String: CurlClient]>([:])

    static func client(for bundle: CABundle?) -> CurlClient {
        guard let bundle else { return .shared }
        return byBundle.withLock { clients in
            if let c = clients[bundle.path] { return c }
            var s = CurlSettings()
            s.caBundle = bundle.path
            let c = CurlClient(settings: s)
            clients[bundle.path] = c
            return c
        }
    }
}
