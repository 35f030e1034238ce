/// `envpublish --exclude PATTERN` / `--exclude-from FILE`, with rsync's rules for exclude
/// patterns:
///
/// - `name` (no `/`) matches the last component of any path: `__pycache__`, `*.pyc`;
/// - a trailing `/` matches directories only: `.pytest_cache/`;
/// - a leading `/` anchors the pattern at the top of the tree: `/share/doc`;
/// - a pattern with a `/` inside matches the end of the path at a component boundary:
///   `tests/data` excludes `a/tests/data` (anchored with a leading `/`);
/// - `*` matches anything but `/`, `**` anything including `/`, `?` one character but `/`,
///   `[abc]`, `[a-z]`, `[!a]` one character of a class.
///
/// An excluded directory is left out with everything below it.
public struct ExcludeRules: Sendable {
    struct Rule: Sendable {
        var pattern: [UInt8]
        var anchored: Bool
        var directoryOnly: Bool
        var wholePath: Bool
    }

    let rules: [Rule]
    public var isEmpty: Bool { rules.isEmpty }

    /// No rules: nothing is excluded.
    public init() { rules = [] }

    public init(patterns: [String]) throws {
        var rules: [Rule] = []
        for raw in patterns {
            var p = Array(raw.utf8)
            guard !p.isEmpty else { throw PublishError.badExclude(pattern: raw, reason: "empty pattern") }
            var dirOnly = false
            while p.count > 1 && p.last == UInt8(ascii: "/") { p.removeLast(); dirOnly = true }
            var anchored = false
            if p.first == UInt8(ascii: "/") { anchored = true; p.removeFirst() }
            guard !p.isEmpty else { throw PublishError.badExclude(pattern: raw, reason: "excludes the whole tree") }
            if let open = p.firstIndex(of: UInt8(ascii: "[")), !p[open...].contains(UInt8(ascii: "]")) {
                throw PublishError.badExclude(pattern: raw, reason: "unclosed '['")
            }
            let whole = anchored || p.contains(UInt8(ascii: "/")) || Self.contains(p, Array("**".utf8))
            rules.append(Rule(pattern: p, anchored: anchored, directoryOnly: dirOnly, wholePath: whole))
        }
        self.rules = rules
    }

    /// Patterns from an `--exclude-from` file: one a line; blank lines and lines starting with
    /// `#` or `;` are comments; a `- ` prefix (rsync's exclude rule) is allowed. Include rules
    /// (`+ `) are not supported and refused.
    public static func patterns(fromFile bytes: [UInt8], path: String) throws -> [String] {
        var out: [String] = []
        for (i, line) in String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var l = Substring(line)
            if l.hasSuffix("\r") { l = l.dropLast() }
            if l.isEmpty || l.hasPrefix("#") || l.hasPrefix(";") { continue }
            if l.hasPrefix("+ ") { throw PublishError.badExclude(pattern: String(l), reason: "\(path) line \(i + 1): include rules ('+ ') are not supported") }
            if l.hasPrefix("- ") { l = l.dropFirst(2) }
            out.append(String(l))
        }
        return out
    }

    /// Whether `path` (relative to the tree's top, components joined by `/`) is excluded.
    public func excludes(_ path: [UInt8], isDirectory: Bool) -> Bool {
        for r in rules where !r.directoryOnly || isDirectory {
            if r.wholePath {
                if r.anchored {
                    if Self.match(r.pattern[...], path[...]) { return true }
                } else {
                    var start = 0
                    while true {
                        if Self.match(r.pattern[...], path[start...]) { return true }
                        guard let slash = path[start...].firstIndex(of: UInt8(ascii: "/")) else { break }
                        start = slash + 1
                    }
                }
            } else {
                let last = path.lastIndex(of: UInt8(ascii: "/")).map { path[($0 + 1)...] } ?? path[...]
                if Self.match(r.pattern[...], last) { return true }
            }
        }
        return false
    }

    static func contains(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count >= b.count else { return false }
        for i in 0...(a.count - b.count) where Array(a[i..<(i + b.count)]) == b { return true }
        return false
    }

    /// Glob match of a whole string.
    static func match(_ p: ArraySlice<UInt8>, _ s: ArraySlice<UInt8>) -> Bool {
        let star = UInt8(ascii: "*"), q = UInt8(ascii: "?"), slash = UInt8(ascii: "/"), open = UInt8(ascii: "[")
        var pi = p.startIndex, si = s.startIndex
        while pi < p.endIndex {
            let c = p[pi]
            if c == star {
                let double = pi + 1 < p.endIndex && p[pi + 1] == star
                var rest = pi + (double ? 2 : 1)
                while rest < p.endIndex && p[rest] == star { rest += 1 }
                if rest == p.endIndex { return double || !s[si...].contains(slash) }
                var k = si
                while true {
                    if match(p[rest...], s[k...]) { return true }
                    guard k < s.endIndex, double || s[k] != slash else { return false }
                    k += 1
                }
            }
            guard si < s.endIndex else { return false }
            if c == q {
                guard s[si] != slash else { return false }
            } else if c == open, let close = p[(pi + 1)...].firstIndex(of: UInt8(ascii: "]")) {
                var body = p[(pi + 1)..<close]
                var negate = false
                if let f = body.first, f == UInt8(ascii: "!") || f == UInt8(ascii: "^") { negate = true; body = body.dropFirst() }
                var hit = false
                var j = body.startIndex
                while j < body.endIndex {
                    if j + 2 < body.endIndex && body[j + 1] == UInt8(ascii: "-") {
                        if s[si] >= body[j] && s[si] <= body[j + 2] { hit = true }
                        j += 3
                    } else {
                        if s[si] == body[j] { hit = true }
                        j += 1
                    }
                }
                guard hit != negate, s[si] != slash else { return false }
                pi = close + 1
                si += 1
                continue
            } else if c != s[si] {
                return false
            }
            pi += 1
            si += 1
        }
        return si == s.endIndex
    }
}
