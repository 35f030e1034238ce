// Which refs a mount accepts. With no trusted key anything goes, as before signatures existed.
// With at least one (`--trust PUBFILE`, or any CONFIG/trusted.d/*.pub), a ref is accepted only
// when it is signed by one of them over its own fields, and, per store and environment, when it
// is not older than the newest signed revision this machine has accepted (RollbackState).
// This runs on the ref before anything of it is used: before its manifest is fetched, before
// it is cached, before anything is mounted.
import SysKit

public enum TrustError: Error, CustomStringConvertible, Sendable, Equatable {
    case key(String)
    case unsigned(source: String, trusted: [String])
    case untrustedKey(source: String, keyID: String, trusted: [String])
    case badSignature(source: String, keyID: String)
    case rollback(source: String, revision: UInt64, seen: UInt64, stateFile: String)
    case rewritten(source: String, revision: UInt64, manifest: ChunkID, seen: ChunkID)
    case tooOld(source: String, revision: UInt64, ageSeconds: Int64, maxAge: Int64)
    case state(String)

    public var description: String {
        switch self {
        case .key(let s), .state(let s):
            return s
        case .unsigned(let source, let trusted):
            return "\(source) is not signed; refused (this mount accepts only environments signed by key \(trusted.joined(separator: ", ")))"
        case .untrustedKey(let source, let keyID, let trusted):
            return "\(source) is signed by key \(keyID), which is not trusted here; refused (trusted: \(trusted.joined(separator: ", ")))"
        case .badSignature(let source, let keyID):
            return "\(source) does not match its signature by key \(keyID): the ref was altered after signing (manifest, revision, time or environment name); refused"
        case .rollback(let source, let revision, let seen, let stateFile):
            return "\(source) is revision \(revision), older than revision \(seen) already mounted here; refused as a rollback (state: \(stateFile))"
        case .rewritten(let source, let revision, let manifest, let seen):
            return "\(source) is revision \(revision) with manifest \(manifest.hex.prefix(16)), but revision \(revision) was mounted here with manifest \(seen.hex.prefix(16)); refused (the store's history was rewritten)"
        case .tooOld(let source, let revision, let age, let maxAge):
            return "\(source) is revision \(revision), signed \(age) s ago, more than --max-age \(maxAge) s; refused (is the store frozen at an old revision?)"
        }
    }
}

/// A public key a mount trusts, and the file it came from.
public struct TrustedKey: Sendable, Equatable {
    public let key: Ed25519PublicKey
    public let file: String

    public init(key: Ed25519PublicKey, file: String) { self.key = key; self.file = file }

    public init(file: String) throws {
        let pem: [UInt8]
        do { pem = try FS.readFile(file) } catch { throw TrustError.key("cannot read trusted key \(file): \(error)") }
        do { key = try Ed25519PublicKey(pem: pem) } catch { throw TrustError.key("trusted key \(file): \(error)") }
        self.file = file
    }
}

public struct TrustPolicy: Sendable {
    /// Signatures by any of these are accepted; empty: signatures are not required.
    public var keys: [TrustedKey]
    /// Where accepted revisions are remembered (needed when keys are given).
    public var state: RollbackState?
    /// Accept a revision older than the newest seen (and do not record it): for mounting an
    /// older revision on purpose. Signatures are still required.
    public var allowOlder = false
    /// Refuse a signed ref published longer ago than this many seconds (a freeze defence).
    public var maxAge: Int64?

    public init(keys: [TrustedKey] = [], state: RollbackState? = nil) { self.keys = keys; self.state = state }

    /// Nothing is required: the behaviour of a mount without any trusted key.
    public static let none = TrustPolicy()

    public var isEnforced: Bool { !keys.isEmpty }

    /// `$ENVMOUNT_CONFIG_DIR`, else `/etc/envmount`.
    public static func configDirectory() -> String {
        if let d = ProcessControl.environment("ENVMOUNT_CONFIG_DIR"), !d.isEmpty { return d }
        return "/etc/envmount"
    }

    /// The keys named on the command line plus every `CONFIG/trusted.d/*.pub`. A key file that
    /// cannot be read is an error, never skipped: a broken key must not turn checking off.
    public static func load(trustFiles: [String], configDirectory: String = configDirectory(),
                            stateDirectory: String? = nil) throws -> TrustPolicy {
        var keys: [TrustedKey] = []
        for f in trustFiles { keys.append(try TrustedKey(file: f)) }
        let dir = configDirectory + "/trusted.d"
        if FS.exists(dir) {
            try checkNotWritableByOthers(dir)
            let names: [String]
            do { names = try FS.listDirectory(dir) } catch { throw TrustError.key("cannot list \(dir): \(error)") }
            for n in names.sorted() where n.hasSuffix(".pub") && !n.hasPrefix(".") {
                try checkNotWritableByOthers(dir + "/" + n)
                keys.append(try TrustedKey(file: dir + "/" + n))
            }
        }
        var policy = TrustPolicy(keys: keys)
        if policy.isEnforced { policy.state = RollbackState(directory: try stateDirectory ?? RollbackState.defaultDirectory()) }
        return policy
    }

    /// Whoever can add a key to trusted.d decides what every mount runs: the directory and its
    /// keys must belong to root or to this user, and not be writable by group or others.
    static func checkNotWritableByOthers(_ path: String) throws {
        let st: FileStat
        do { st = try FS.stat(path) } catch { throw TrustError.key("cannot read trusted key \(path): \(error)") }
        if st.uid != 0 && st.uid != ProcessControl.userID {
            throw TrustError.key("\(path) belongs to uid \(st.uid), neither root nor this user; refusing its keys")
        }
        if st.mode & 0o022 != 0 {
            throw TrustError.key("\(path) is writable by group or others (mode \(String(st.mode & 0o7777, radix: 8))); refusing its keys (chmod go-w)")
        }
    }

    /// Checks `ref` (read from `source`, e.g. "refs/torch in s3://b/envs") for environment
    /// `env` of `store`, and records it as seen. Returns the key that signed it, or nil when
    /// no signature is required. Throws a TrustError that says what is wrong, in one line.
    @discardableResult
    public func admit(_ ref: Ref, env: String, store: String, source: String,
                      now: Int64 = ProcessControl.wallClockSeconds()) throws -> TrustedKey? {
        guard isEnforced else { return nil }
        let ids = keys.map { $0.key.keyID }
        guard let sig = ref.signature else { throw TrustError.unsigned(source: source, trusted: ids) }
        guard let trusted = keys.first(where: { $0.key.keyID == sig.keyID }) else {
            throw TrustError.untrustedKey(source: source, keyID: sig.keyID, trusted: ids)
        }
        guard SignedRef.verify(ref, env: env, key: trusted.key) else {
            throw TrustError.badSignature(source: source, keyID: sig.keyID)
        }
        if let maxAge, now - ref.publishedAt > maxAge {
            throw TrustError.tooOld(source: source, revision: ref.revision, ageSeconds: now - ref.publishedAt, maxAge: maxAge)
        }
        guard let state else { throw TrustError.state("no rollback state directory configured") }
        try state.admit(ref, env: env, store: store, source: source, allowOlder: allowOlder)
        return trusted
    }
}
