import EnvFormat
import SysKit

/// The trust part of a mount's options (`envmount mount --trust … --state-dir … --max-age …`),
/// with every path resolved by the parent, so its daemon applies the same policy to the same
/// files. The policy itself is EnvFormat's TrustPolicy.
public struct TrustOptions: Codable, Sendable, Equatable {
    /// PEM public keys to trust (`--trust`, repeatable).
    public var keys: [String] = []
    /// Holds trusted.d/ (nil: `$ENVMOUNT_CONFIG_DIR`, else /etc/envmount).
    public var configDir: String?
    /// Rollback state (nil: `$ENVMOUNT_STATE_DIR`, /var/lib/envmount/state for root, else XDG).
    public var stateDir: String?
    /// Refuse a signed ref published longer ago than this many seconds.
    public var maxAge: Int64?
    /// Accept a signed revision older than the newest this machine has seen, without recording
    /// it: for mounting an older revision on purpose (`--revision N`). Signatures are still
    /// required, and a revision number with another manifest is still refused.
    public var allowOlder = false

    public init() {}

    public func validate() throws {
        if let m = maxAge, m <= 0 { throw MountError("--max-age must be more than 0 seconds") }
    }

    /// Paths made absolute and the defaults from the environment filled in, for the daemon.
    public func resolved() -> TrustOptions {
        var t = self
        t.keys = keys.map(Mountpoints.absolute)
        t.configDir = Mountpoints.absolute(configDir ?? TrustPolicy.configDirectory())
        t.stateDir = stateDir.map(Mountpoints.absolute)
        return t
    }

    /// The keys (`--trust` and trusted.d) and rollback state these options name.
    public func policy() throws -> TrustPolicy {
        var p = try TrustPolicy.load(trustFiles: keys, configDirectory: configDir ?? TrustPolicy.configDirectory(),
                                     stateDirectory: stateDir)
        p.maxAge = maxAge
        p.allowOlder = allowOlder
        if maxAge != nil && !p.isEnforced {
            throw MountError("--max-age needs a trusted key (--trust PUBFILE or \(configDir ?? TrustPolicy.configDirectory())/trusted.d/*.pub)")
        }
        return p
    }
}
