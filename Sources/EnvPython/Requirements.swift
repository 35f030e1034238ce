// A distribution's installed requirements, for `envmount warm NAME --deps`: the `Requires-Dist`
// lines of its METADATA (PEP 566/508), with environment markers evaluated for this environment.
// No extras are requested, so a requirement behind `extra == "…"` does not apply.
import SysKit

public struct Requirement: Sendable, Equatable {
    public var name: String
    public var normalized: String
    public var marker: String?

    /// Parses one `Requires-Dist` value: `name[extras] (specifiers) ; marker`, or `name @ url ; marker`.
    public static func parse(_ value: String) -> Requirement? {
        let s = value.trimmingWhitespace()
        var name = ""
        for c in s {
            if c.isLetter || c.isNumber || c == "-" || c == "_" || c == "." { name.append(c) } else { break }
        }
        guard !name.isEmpty, name.first!.isLetter || name.first!.isNumber else { return nil }
        var marker: String?
        if let semi = s.firstIndex(of: ";") {
            let m = s[s.index(after: semi)...].trimmingWhitespace()
            if !m.isEmpty { marker = m }
        }
        return Requirement(name: name, normalized: PackageResolver.normalize(name), marker: marker)
    }

    /// Whether the requirement applies in `env`; a marker that cannot be parsed counts as applying
    /// (warming one installed package too many is harmless, missing one is not).
    public func applies(in env: MarkerEnvironment) -> Bool {
        guard let marker else { return true }
        return (try? Marker.evaluate(marker, env)) ?? true
    }
}

/// The values PEP 508 markers compare against.
public struct MarkerEnvironment: Sendable {
    public var values: [String: String]

    /// This machine's architecture as `platform.machine()` spells it.
    public static var thisMachine: String {
        #if arch(x86_64)
        return "x86_64"
        #elseif arch(arm64)
        return "aarch64"
        #else
        return ""
        #endif
    }

    /// An environment for CPython `pythonVersion` (e.g. "3.11.7") on a Linux machine.
    public init(pythonVersion: String, machine: String = MarkerEnvironment.thisMachine) {
        let parts = pythonVersion.split(separator: ".")
        let short = parts.prefix(2).joined(separator: ".")
        values = [
            "python_version": short, "python_full_version": pythonVersion,
            "implementation_name": "cpython", "implementation_version": pythonVersion,
            "platform_python_implementation": "CPython", "sys_platform": "linux",
            "platform_system": "Linux", "os_name": "posix", "platform_machine": machine,
            "platform_release": "", "platform_version": "", "extra": "",
        ]
    }
}

public struct MarkerError: Error, CustomStringConvertible {
    public let description: String
}

/// PEP 508 environment markers: `or`/`and`, parentheses, comparisons of variables and quoted
/// strings; versions compare as versions.
public enum Marker {
    public static func evaluate(_ text: String, _ env: MarkerEnvironment) throws -> Bool {
        var p = Parser(tokens: try tokenize(text), env: env)
        let v = try p.orExpr()
        guard p.at == p.tokens.count else { throw MarkerError(description: "unexpected '\(p.tokens[p.at])' in marker '\(text)'") }
        return v
    }

    enum Token: Equatable, CustomStringConvertible {
        case word(String), string(String), op(String), open, close
        var description: String {
            switch self {
            case .word(let s), .op(let s): return s
            case .string(let s): return "\"\(s)\""
            case .open: return "("
            case .close: return ")"
            }
        }
    }

    static func tokenize(_ text: String) throws -> [Token] {
        var out: [Token] = []
        let cs = Array(text)
        var i = 0
        while i < cs.count {
            let c = cs[i]
            if c.isWhitespace { i += 1; continue }
            if c == "(" { out.append(.open); i += 1; continue }
            if c == ")" { out.append(.close); i += 1; continue }
            if c == "'" || c == "\"" {
                guard let end = cs[(i + 1)...].firstIndex(of: c) else { throw MarkerError(description: "unterminated string in marker '\(text)'") }
                out.append(.string(String(cs[(i + 1)..<end])))
                i = end + 1
                continue
            }
            if "<>=!~".contains(c) {
                var j = i
                while j < cs.count, "<>=!~".contains(cs[j]) { j += 1 }
                out.append(.op(String(cs[i..<j])))
                i = j
                continue
            }
            if c.isLetter || c == "_" {
                var j = i
                while j < cs.count, cs[j].isLetter || cs[j].isNumber || cs[j] == "_" || cs[j] == "." { j += 1 }
                out.append(.word(String(cs[i..<j])))
                i = j
                continue
            }
            throw MarkerError(description: "unexpected '\(c)' in marker '\(text)'")
        }
        return out
    }

    struct Parser {
        let tokens: [Token]
        let env: MarkerEnvironment
        var at = 0

        mutating func orExpr() throws -> Bool {
            var v = try andExpr()
            while at < tokens.count, tokens[at] == .word("or") {
                at += 1
                let r = try andExpr()
                v = v || r
            }
            return v
        }

        mutating func andExpr() throws -> Bool {
            var v = try atom()
            while at < tokens.count, tokens[at] == .word("and") {
                at += 1
                let r = try atom()
                v = v && r
            }
            return v
        }

        mutating func atom() throws -> Bool {
            guard at < tokens.count else { throw MarkerError(description: "marker ends early") }
            if tokens[at] == .open {
                at += 1
                let v = try orExpr()
                guard at < tokens.count, tokens[at] == .close else { throw MarkerError(description: "missing ')' in marker") }
                at += 1
                return v
            }
            let (lhs, lhsVar) = try value()
            guard at < tokens.count else { throw MarkerError(description: "marker ends after '\(lhs)'") }
            var op: String
            switch tokens[at] {
            case .op(let o): op = o; at += 1
            case .word("in"): op = "in"; at += 1
            case .word("not"):
                at += 1
                guard at < tokens.count, tokens[at] == .word("in") else { throw MarkerError(description: "expected 'in' after 'not'") }
                op = "not in"; at += 1
            default: throw MarkerError(description: "expected an operator, found '\(tokens[at])'")
            }
            let (rhs, rhsVar) = try value()
            let versionLike: Set<String> = ["python_version", "python_full_version", "implementation_version"]
            let asVersion = versionLike.contains(lhsVar ?? "") || versionLike.contains(rhsVar ?? "")
            // `extra` names are compared normalized (PEP 685).
            let isExtra = lhsVar == "extra" || rhsVar == "extra"
            let l = isExtra ? PackageResolver.normalize(lhs) : lhs, r = isExtra ? PackageResolver.normalize(rhs) : rhs
            return try compare(l, op, r, asVersion: asVersion)
        }

        /// A quoted string, or a variable's value (and its name).
        mutating func value() throws -> (String, String?) {
            guard at < tokens.count else { throw MarkerError(description: "marker ends early") }
            defer { at += 1 }
            switch tokens[at] {
            case .string(let s): return (s, nil)
            case .word(let w):
                guard let v = env.values[w] else { throw MarkerError(description: "unknown marker variable '\(w)'") }
                return (v, w)
            default: throw MarkerError(description: "expected a value, found '\(tokens[at])'")
            }
        }
    }

    static func compare(_ l: String, _ op: String, _ r: String, asVersion: Bool) throws -> Bool {
        switch op {
        case "in": return r.contains(l)
        case "not in": return !r.contains(l)
        case "===": return l == r
        default: break
        }
        if asVersion, let a = Version(l), let b = Version(r) {
            switch op {
            case "==":
                if r.hasSuffix(".*") { return a.hasPrefix(b) }
                return a == b
            case "!=":
                if r.hasSuffix(".*") { return !a.hasPrefix(b) }
                return a != b
            case "<": return a < b
            case "<=": return a <= b
            case ">": return a > b
            case ">=": return a >= b
            case "~=": return a >= b && a.hasPrefix(Version(b.parts.dropLast()))
            default: throw MarkerError(description: "unknown operator '\(op)'")
            }
        }
        switch op {
        case "==": return l == r
        case "!=": return l != r
        case "<": return l < r
        case "<=": return l <= r
        case ">": return l > r
        case ">=": return l >= r
        default: throw MarkerError(description: "operator '\(op)' needs versions ('\(l)', '\(r)')")
        }
    }
}

/// A release version's numeric parts (pre/post/dev suffixes are ignored: markers name releases).
struct Version: Comparable {
    var parts: [Int]

    init(_ parts: ArraySlice<Int>) { self.parts = Array(parts) }

    init?(_ s: String) {
        var out: [Int] = []
        for piece in s.split(separator: ".") {
            let digits = piece.prefix { $0.isASCII && $0.isNumber }
            guard let n = Int(digits) else { if piece == "*" { break }; if out.isEmpty { return nil }; break }
            out.append(n)
            if digits.count != piece.count { break }
        }
        guard !out.isEmpty else { return nil }
        parts = out
    }

    func hasPrefix(_ p: Version) -> Bool { parts.count >= p.parts.count && Array(parts.prefix(p.parts.count)) == p.parts }

    private func padded(_ n: Int) -> [Int] { parts + [Int](repeating: 0, count: max(0, n - parts.count)) }

    static func == (a: Version, b: Version) -> Bool {
        let n = max(a.parts.count, b.parts.count)
        return a.padded(n) == b.padded(n)
    }

    static func < (a: Version, b: Version) -> Bool {
        let n = max(a.parts.count, b.parts.count)
        return a.padded(n).lexicographicallyPrecedes(b.padded(n))
    }
}

extension StringProtocol {
    func trimmingWhitespace() -> String {
        String(drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed())
    }
}

extension PackageResolver {
    /// The `Requires-Dist` entries of a distribution's METADATA (PKG-INFO for an egg-info;
    /// `requires.txt` is not read).
    public func requirements(of d: Distribution) -> [Requirement] {
        let file = d.distInfo.hasSuffix(".egg-info") ? "PKG-INFO" : "METADATA"
        guard let bytes = try? FS.readFile(root + "/" + d.distInfo + "/" + file) else { return [] }
        var out: [Requirement] = []
        for line in Self.lines(bytes, keepEmpty: true) {
            if line.isEmpty { break }   // the headers end at the first empty line; the description follows
            guard line.lowercased().hasPrefix("requires-dist:") else { continue }
            if let r = Requirement.parse(String(line.dropFirst("requires-dist:".count))) { out.append(r) }
        }
        return out
    }

    /// `dists` and, recursively, their installed requirements that apply in `env`, each once, in
    /// the order found; and the names of requirements that apply but are not installed.
    public func withDependencies(_ dists: [Distribution], in env: MarkerEnvironment, installed: [Distribution]) -> (dists: [Distribution], notInstalled: [String]) {
        var byName: [String: Distribution] = [:]
        for d in installed where byName[d.normalized] == nil { byName[d.normalized] = d }
        var out: [Distribution] = []
        var seen = Set<String>()
        var missing: [String] = []
        var queue = dists
        var head = 0
        while head < queue.count {
            let d = queue[head]
            head += 1
            guard seen.insert(d.normalized).inserted else { continue }
            out.append(d)
            for r in requirements(of: d) where r.applies(in: env) {
                if let dep = byName[r.normalized] {
                    if !seen.contains(dep.normalized) { queue.append(dep) }
                } else if !missing.contains(r.name) {
                    missing.append(r.name)
                }
            }
        }
        return (out, missing)
    }

    /// The environment's Python version, from pyvenv.cfg (`version_info`, `version`) or the
    /// `lib/pythonX.Y` directory name.
    public func pythonVersion() -> String? {
        if let cfg = try? FS.readFile(root + "/pyvenv.cfg") {
            var found: [String: String] = [:]
            for line in Self.lines(cfg) {
                let kv = line.split(separator: "=", maxSplits: 1)
                if kv.count == 2 { found[kv[0].trimmingWhitespace()] = kv[1].trimmingWhitespace() }
            }
            if let v = found["version_info"] ?? found["version"], let parsed = Version(v) { return parsed.parts.map(String.init).joined(separator: ".") }
        }
        for site in sitePackages() {
            let py = site.split(separator: "/").dropFirst().first.map(String.init) ?? ""
            if py.hasPrefix("python") { return String(py.dropFirst(6)) }
        }
        return nil
    }
}
