import SysKit
import EnvFormat
import EnvStore

/// Package-level differences between two revisions (`envmount diff`).
public struct PackageDiff: Sendable {
    public var added: [Distribution] = []
    public var removed: [Distribution] = []
    public var upgraded: [(from: Distribution, to: Distribution)] = []
    public var downgraded: [(from: Distribution, to: Distribution)] = []
    /// Same version, different source (a direct URL changed, or editable-ness).
    public var changed: [(from: Distribution, to: Distribution)] = []

    public init(from a: [Distribution], to b: [Distribution]) {
        let old = Dictionary(a.map { ($0.canonicalName, $0) }, uniquingKeysWith: { x, _ in x })
        let new = Dictionary(b.map { ($0.canonicalName, $0) }, uniquingKeysWith: { x, _ in x })
        for k in new.keys.sorted() {
            guard let n = new[k] else { continue }
            guard let o = old[k] else { added.append(n); continue }
            let c = Self.compareVersions(o.version, n.version)
            if c < 0 { upgraded.append((o, n)) } else if c > 0 { downgraded.append((o, n)) } else if o.requirement != n.requirement { changed.append((o, n)) }
        }
        for k in old.keys.sorted() where new[k] == nil { removed.append(old[k]!) }
    }

    public var isEmpty: Bool { added.isEmpty && removed.isEmpty && upgraded.isEmpty && downgraded.isEmpty && changed.isEmpty }

    /// PEP 440 ordering for the common cases: the release numbers compared as numbers, then a
    /// pre-release (a, b, rc, dev) before the release and a post-release after it; anything else
    /// falls back to comparing the text.
    public static func compareVersions(_ a: String, _ b: String) -> Int {
        if a == b { return 0 }
        let pa = parse(a), pb = parse(b)
        for i in 0..<max(pa.release.count, pb.release.count) {
            let x = i < pa.release.count ? pa.release[i] : 0
            let y = i < pb.release.count ? pb.release[i] : 0
            if x != y { return x < y ? -1 : 1 }
        }
        if pa.rank != pb.rank { return pa.rank < pb.rank ? -1 : 1 }
        if pa.suffixNumber != pb.suffixNumber { return pa.suffixNumber < pb.suffixNumber ? -1 : 1 }
        return a < b ? -1 : (a > b ? 1 : 0)
    }

    /// rank: dev 0, a 1, b 2, rc 3, release 4, post 5.
    static func parse(_ v: String) -> (release: [Int], rank: Int, suffixNumber: Int) {
        var s = Substring(v.lowercased())
        if let bang = s.firstIndex(of: "!") { s = s[s.index(after: bang)...] }
        if let plus = s.firstIndex(of: "+") { s = s[..<plus] }
        var release: [Int] = []
        var num = ""
        var idx = s.startIndex
        while idx < s.endIndex {
            let c = s[idx]
            if c.isASCII && c.isNumber { num.append(c) } else if c == "." && !num.isEmpty { release.append(Int(num) ?? 0); num = "" } else { break }
            idx = s.index(after: idx)
        }
        if !num.isEmpty { release.append(Int(num) ?? 0) }
        var rest = String(s[idx...])
        while rest.hasPrefix(".") || rest.hasPrefix("-") || rest.hasPrefix("_") { rest.removeFirst() }
        var rank = 4
        for (tag, r) in [("dev", 0), ("alpha", 1), ("a", 1), ("beta", 2), ("b", 2), ("rc", 3), ("c", 3), ("post", 5)] where rest.hasPrefix(tag) {
            rank = r
            rest.removeFirst(tag.count)
            break
        }
        let digits = rest.drop { !($0.isASCII && $0.isNumber) }.prefix { $0.isASCII && $0.isNumber }
        return (release, rank, Int(digits) ?? 0)
    }
}

/// "2026-12-01 14:55 UTC" without Foundation's formatters.
public func formatUTC(_ t: Int64) -> String {
    let days = t >= 0 ? t / 86400 : (t - 86399) / 86400
    let secs = t - days * 86400
    // Civil date from days (Howard Hinnant's algorithm).
    let z = days + 719468
    let era = (z >= 0 ? z : z - 146096) / 146097
    let doe = z - era * 146097
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
    let mp = (5 * doy + 2) / 153
    let d = doy - (153 * mp + 2) / 5 + 1
    let m = mp < 10 ? mp + 3 : mp - 9
    let y = yoe + era * 400 + (m <= 2 ? 1 : 0)
    func two(_ v: Int64) -> String { v < 10 ? "0\(v)" : "\(v)" }
    return "\(y)-\(two(m))-\(two(d)) \(two(secs / 3600)):\(two(secs % 3600 / 60)) UTC"
}
