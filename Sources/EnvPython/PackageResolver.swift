// Which files of a Python environment belong to an installed distribution, so that `envmount
// warm NAME` fetches what `import NAME` will read.
//
// A distribution's RECORD lists the files pip installed, but not what appeared later: the
// bytecode Python writes into `__pycache__` on first import (or pip compiled without listing it).
// So a top-level directory that the distribution owns outright (`numpy/`, `numpy.libs/`) is
// warmed whole. A directory that other distributions also put files in (the `nvidia/` namespace
// that nvidia-cublas-cu12, nvidia-cudnn-cu12, … share) is not: the resolver descends into it
// and warms only the subdirectories this distribution owns (`nvidia/cublas/`), plus its own
// files and their bytecode. "Owns" is decided from the tree and this distribution's RECORD
// alone: a directory is owned when every entry under it, apart from `__pycache__` contents, is
// listed in the RECORD. Nothing else is read, so resolving costs no chunk fetches beyond the
// RECORD itself.
import SysKit

public struct PackageResolver: Sendable {
    public struct Distribution: Sendable, Equatable {
        public var name: String          // as in the dist-info directory name
        public var normalized: String    // PEP 503: lower case, runs of -_. as one -
        public var version: String
        public var distInfo: String      // path relative to the root
        public var site: String          // site-packages, relative to the root
    }

    /// What to fetch for one distribution: `paths` (files, or directories meaning everything
    /// under them), relative to the root and sorted.
    public struct Plan: Sendable, Equatable {
        public var paths: [String] = []
        /// Directories below site-packages warmed whole (top-level packages, `.libs`, owned parts of namespaces).
        public var wholeDirectories: [String] = []
        /// Files the RECORD lists (0 without a RECORD).
        public var recordFiles = 0
        /// Files outside site-packages (scripts in bin/, headers, data).
        public var outsideFiles = 0
    }

    public let root: String

    public init(root: String) { self.root = root }

    public static func normalize(_ s: String) -> String {
        var out = ""
        var lastDash = false
        for c in s.lowercased() {
            if c == "-" || c == "_" || c == "." {
                if !lastDash { out.append("-") }
                lastDash = true
            } else {
                out.append(c)
                lastDash = false
            }
        }
        return out
    }

    public func sitePackages() -> [String] {
        var out: [String] = []
        var seen = Set<String>()
        for lib in ["lib", "lib64"] {
            for py in ((try? FS.listDirectory(root + "/" + lib)) ?? []).sorted() where py.hasPrefix("python") {
                let site = "\(lib)/\(py)/site-packages"
                guard (try? FS.stat(root + "/" + site))?.kind == .directory else { continue }
                let real = (try? FS.realpath(root + "/" + site)) ?? site
                if seen.insert(real).inserted { out.append(site) }
            }
        }
        return out
    }

    public func distributions() -> [Distribution] {
        var out: [Distribution] = []
        for site in sitePackages() {
            for d in ((try? FS.listDirectory(root + "/" + site)) ?? []).sorted() where d.hasSuffix(".dist-info") || d.hasSuffix(".egg-info") {
                let base = String(d.dropLast(d.hasSuffix(".dist-info") ? 10 : 9))
                // name-version: the name is everything before the first '-' followed by a digit.
                var name = base, version = ""
                if let r = Self.versionDash(in: base) {
                    name = String(base[..<r])
                    version = String(base[base.index(after: r)...])
                }
                out.append(Distribution(name: name, normalized: Self.normalize(name), version: version,
                                        distInfo: site + "/" + d, site: site))
            }
        }
        return out
    }

    static func versionDash(in s: String) -> String.Index? {
        var i = s.startIndex
        while i < s.endIndex {
            let n = s.index(after: i)
            if s[i] == "-", n < s.endIndex, s[n].isASCII, s[n].isNumber { return i }
            i = n
        }
        return nil
    }

    /// The text lines of a metadata file: RECORD is written with CRLF by some installers, and a
    /// Swift `Character` treats "\r\n" as one, so split bytes, not characters.
    public static func lines(_ bytes: [UInt8], keepEmpty: Bool = false) -> [String] {
        bytes.split(separator: 0x0a, omittingEmptySubsequences: !keepEmpty).map { line in
            String(decoding: line.last == 0x0d ? line.dropLast() : line[...], as: UTF8.self)
        }
    }

    /// Root-relative paths the RECORD lists, or nil when there is no RECORD.
    func recordPaths(of d: Distribution) -> [String]? {
        guard let record = try? FS.readFile(root + "/" + d.distInfo + "/RECORD") else { return nil }
        var out: [String] = []
        for line in Self.lines(record) {
            guard let path = Self.firstCSVField(Substring(line)), !path.isEmpty else { continue }
            if let rel = Self.clean(d.site + "/" + path) { out.append(rel) }
        }
        return out
    }

    /// Paths (relative to the root) to fetch for a distribution.
    public func plan(for d: Distribution) -> Plan {
        var plan = Plan()
        var paths = Set([d.distInfo])
        guard let record = recordPaths(of: d) else {
            // An egg-info or a RECORD-less install: its top-level names, whole.
            if let top = try? FS.readFile(root + "/" + d.distInfo + "/top_level.txt") {
                for name in Self.lines(top) where !name.isEmpty && !name.contains("/") && name != ".." {
                    for p in [d.site + "/" + name, d.site + "/" + name + ".py"] where FS.exists(root + "/" + p) {
                        paths.insert(p)
                        if (try? FS.lstat(root + "/" + p))?.kind == .directory { plan.wholeDirectories.append(p) }
                    }
                }
            }
            plan.paths = paths.sorted()
            return plan
        }
        plan.recordFiles = record.count
        let owned = Set(record)
        var ancestors = Set<String>()
        for p in record {
            var cur = Substring(p)
            while let slash = cur.lastIndex(of: "/") {
                cur = cur[..<slash]
                if !ancestors.insert(String(cur)).inserted { break }
            }
        }
        let sitePrefix = d.site + "/"
        var topLevel = Set<String>()
        for p in record {
            guard p.hasPrefix(sitePrefix) else {
                paths.insert(p)
                plan.outsideFiles += 1
                continue
            }
            let rest = p.dropFirst(sitePrefix.count)
            if let slash = rest.firstIndex(of: "/") {
                let top = sitePrefix + rest[..<slash]
                if top != d.distInfo { topLevel.insert(top) }
            } else {
                paths.insert(p)
                paths.formUnion(bytecode(of: p))
            }
        }
        var walker = OwnershipWalker(root: root, owned: owned, ancestors: ancestors)
        for top in topLevel.sorted() {
            if top.hasSuffix("/__pycache__") { continue }
            walker.cover(top, into: &paths, whole: &plan.wholeDirectories)
        }
        plan.paths = paths.sorted()
        plan.wholeDirectories.sort()
        return plan
    }

    /// The bytecode Python writes for `dir/name.py`: `dir/__pycache__/name.*.pyc`.
    func bytecode(of path: String) -> [String] {
        guard path.hasSuffix(".py") else { return [] }
        let slash = path.lastIndex(of: "/")
        let dir = slash.map { String(path[..<$0]) } ?? ""
        let file = slash.map { String(path[path.index(after: $0)...]) } ?? path
        let stem = String(file.dropLast(3)) + "."
        let cache = (dir.isEmpty ? "" : dir + "/") + "__pycache__"
        return ((try? FS.listDirectory(root + "/" + cache)) ?? []).filter { $0.hasPrefix(stem) && $0.hasSuffix(".pyc") }.map { cache + "/" + $0 }
    }

    /// RECORD is CSV: a path with a comma is quoted.
    public static func firstCSVField(_ line: Substring) -> String? {
        if line.hasPrefix("\"") {
            var out = ""
            var i = line.index(after: line.startIndex)
            while i < line.endIndex {
                let c = line[i]
                if c == "\"" {
                    let n = line.index(after: i)
                    if n < line.endIndex && line[n] == "\"" { out.append("\""); i = line.index(after: n); continue }
                    return out
                }
                out.append(c)
                i = line.index(after: i)
            }
            return out
        }
        return line.split(separator: ",", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init)
    }

    /// Resolves `.` and `..` textually; nil when the path leaves the root.
    public static func clean(_ p: String) -> String? {
        var parts: [Substring] = []
        for c in p.split(separator: "/") {
            if c == "." || c.isEmpty { continue }
            if c == ".." { if parts.popLast() == nil { return nil }; continue }
            parts.append(c)
        }
        return parts.joined(separator: "/")
    }

    /// Installed names close to `query`, for "did you mean".
    public func nearMatches(_ query: String, in dists: [Distribution]) -> [String] {
        let q = Self.normalize(query)
        let scored = dists.map { d -> (String, Int) in
            if d.normalized.contains(q) || q.contains(d.normalized) { return (d.name, 0) }
            return (d.name, Self.distance(q, d.normalized))
        }
        return scored.filter { $0.1 <= max(2, q.count / 3) }.sorted { $0.1 < $1.1 }.prefix(5).map { $0.0 }
    }

    static func distance(_ a: String, _ b: String) -> Int {
        let x = Array(a), y = Array(b)
        if x.isEmpty { return y.count }
        var prev = Array(0...y.count)
        for i in 1...x.count {
            var cur = [i] + [Int](repeating: 0, count: y.count)
            for j in 1...max(y.count, 1) where j <= y.count {
                cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x[i - 1] == y[j - 1] ? 0 : 1))
            }
            prev = cur
        }
        return prev[y.count]
    }
}

/// Decides, directory by directory, what a distribution owns outright.
struct OwnershipWalker {
    let root: String
    let owned: Set<String>       // the RECORD's paths
    let ancestors: Set<String>   // every directory above one of them

    init(root: String, owned: Set<String>, ancestors: Set<String>) {
        self.root = root
        self.owned = owned
        self.ancestors = ancestors
    }

    /// Adds `dir` whole when the distribution owns everything in it, else its owned parts.
    mutating func cover(_ dir: String, into paths: inout Set<String>, whole: inout [String]) {
        guard (try? FS.lstat(root + "/" + dir))?.kind == .directory else {
            if owned.contains(dir) { paths.insert(dir) }
            return
        }
        if ownsAll(dir) {
            paths.insert(dir)
            whole.append(dir)
            return
        }
        let children = ((try? FS.listDirectory(root + "/" + dir)) ?? []).sorted()
        for name in children {
            let child = dir + "/" + name
            if name == "__pycache__" {
                // Only the bytecode of this distribution's own modules in a shared directory.
                for c in ((try? FS.listDirectory(root + "/" + child)) ?? []) where c.hasSuffix(".pyc") {
                    let stem = c.split(separator: ".", maxSplits: 1).first.map(String.init) ?? c
                    if owned.contains(dir + "/" + stem + ".py") { paths.insert(child + "/" + c) }
                }
            } else if ancestors.contains(child) {
                cover(child, into: &paths, whole: &whole)
            } else if owned.contains(child) {
                paths.insert(child)
            }
        }
    }

    /// True when every entry under `dir`, apart from `__pycache__` contents, is in the RECORD.
    func ownsAll(_ dir: String) -> Bool {
        var stack = [dir]
        while let d = stack.popLast() {
            guard let names = try? FS.listDirectory(root + "/" + d) else { return false }
            for name in names {
                let p = d + "/" + name
                if name == "__pycache__" { continue }
                if owned.contains(p) { continue }
                if ancestors.contains(p), (try? FS.lstat(root + "/" + p))?.kind == .directory {
                    stack.append(p)
                    continue
                }
                // An empty directory carries nothing of anyone's.
                if (try? FS.lstat(root + "/" + p))?.kind == .directory, (try? FS.listDirectory(root + "/" + p))?.isEmpty == true { continue }
                return false
            }
        }
        return true
    }
}

extension PackageResolver {
    /// Installer tooling, not something a workload imports.
    static let tooling: Set<String> = ["pip", "setuptools", "wheel", "distribute", "pkg-resources", "uv"]

    /// The names `import` takes for a distribution's top-level packages and modules: from
    /// top_level.txt, else from its RECORD (a directory with an `__init__.py`, a `.py` file or an
    /// extension module directly in site-packages). Private (`_x`) and test names are left out.
    public func importNames(of d: Distribution) -> [String] {
        if Self.tooling.contains(d.normalized) { return [] }
        var names: [String] = []
        func add(_ n: String) {
            guard let f = n.first, f.isLetter, !n.hasPrefix("_"), n != "test", n != "tests",
                  n.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }), !names.contains(n) else { return }
            names.append(n)
        }
        if let top = try? FS.readFile(root + "/" + d.distInfo + "/top_level.txt") {
            for n in Self.lines(top) { add(n.trimmingWhitespace()) }
            return names
        }
        let prefix = d.site + "/"
        for p in recordPaths(of: d) ?? [] where p.hasPrefix(prefix) {
            let parts = p.dropFirst(prefix.count).split(separator: "/")
            if parts.count == 2, parts[1] == "__init__.py" { add(String(parts[0])) }
            if parts.count == 1 {
                let file = parts[0]
                if file.hasSuffix(".py") { add(String(file.dropLast(3))) }
                if file.hasSuffix(".so"), let dot = file.firstIndex(of: ".") { add(String(file[..<dot])) }
            }
        }
        return names
    }
}
