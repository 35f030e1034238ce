import ArgumentParser
import EnvDaemon
import SysKit

/// Which environments a mount accepts: signatures, rollback state, freshness.
struct TrustArguments: ParsableArguments {
    @Option(name: .customLong("trust"), help: ArgumentHelp(
        "Accept only environments signed by this Ed25519 public key (PEM; repeatable).",
        discussion: "Keys in $ENVMOUNT_CONFIG_DIR/trusted.d/*.pub (default /etc/envmount/trusted.d) are trusted by every mount as well.",
        valueName: "PUBFILE"))
    var trustKeys: [String] = []

    @Option(help: ArgumentHelp(
        "Where signed revisions already mounted are remembered, to refuse rollbacks (default: $ENVMOUNT_STATE_DIR, /var/lib/envmount/state for root, else ${XDG_STATE_HOME:-~/.local/state}/envmount).",
        valueName: "DIR"))
    var stateDir: String?

    @Option(help: ArgumentHelp(
        "Refuse a signed environment published longer ago than this, e.g. 3600, 90m, 36h, 30d (a defence against a store frozen at an old revision; needs a trusted key).",
        valueName: "AGE"))
    var maxAge: String?

    func validate() throws {
        if let a = maxAge {
            guard let s = Self.parseAge(a) else { throw ValidationError("--max-age: '\(a)' is not an age like 3600, 90m, 36h or 30d") }
            guard s > 0 else { throw ValidationError("--max-age must be more than 0") }
        }
    }

    /// These flags as the trust part of MountOptions.
    var options: TrustOptions {
        var t = TrustOptions()
        t.keys = trustKeys
        t.stateDir = stateDir
        t.maxAge = maxAge.flatMap(Self.parseAge)
        return t
    }

    /// Seconds in "3600", "90s", "90m", "36h" or "30d".
    static func parseAge(_ s: String) -> Int64? {
        let units: [Character: Int64] = ["s": 1, "m": 60, "h": 3600, "d": 86400]
        var digits = Substring(s), unit: Int64 = 1
        if let last = s.last, let u = units[last] { digits = s.dropLast(); unit = u }
        guard !digits.isEmpty, digits.allSatisfy(\.isASCII), let n = Int64(digits) else { return nil }
        let (v, overflow) = n.multipliedReportingOverflow(by: unit)
        return overflow ? nil : v
    }
}
