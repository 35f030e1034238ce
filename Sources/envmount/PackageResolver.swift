import Foundation
import SysKit

/// Python distributions installed in a mounted venv, found through their `*.dist-info`
/// directories, and the files each one installed (its RECORD, else its top-level packages).
struct PackageResolver {
    struct Distribution {
        var name: String          // as in the dist-info directory name
        var normalized: String    // PEP 503: lower case, runs of -_. as one -
        var distInfo: String      // path relative to the mount root
        var site: String          // site-packages, relative to the mount root
    }

    let root: String

    static func normalize(_ s: String) -> String {
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

    func sitePackages() -> [String] {
        var out: [String] = []
        for lib in ["lib", "lib64"] {
            for py in ((try? FS.listDirectory(root + "/" + lib)) ?? []).sorted() where py.hasPrefix("python") {
                let site = "\(lib)/\(py)/site-packages"
                if (try? FS.stat(root + "/" + site))?.kind == .directory, !out.contains(where: { (try? FS.realpath(root + "/" + $0)) == (try? FS.realpath(root + "/" + site)) }) {
                    out.append(site)
                }
            }
        }
        return out
    }

    func distributions() -> [Distribution] {
        var out: [Distribution] = []
        for site in sitePackages() {
            for d in ((try? FS.listDirectory(root + "/" + site)) ?? []).sorted() where d.hasSuffix(".dist-info") || d.hasSuffix(".egg-info") {
                let base = String(d.dropLast(d.hasSuffix(".dist-info") ? 10 : 9))
                // name-version: the name is everything before the first '-' followed by a digit.
                var name = base
                if let r = base.range(of: #"-[0-9]"#, options: .regularExpression) { name = String(base[..<r.lowerBound]) }
                out.append(Distribution(name: name, normalized: Self.normalize(name), distInfo: site + "/" + d, site: site))
            }
        }
        return out
    }

    /// Paths (relative to the root) that a distribution installed.
    func files(of d: Distribution) -> [String] {
        var out = [d.distInfo]
        if let record = try? FS.readFile(root + "/" + d.distInfo + "/RECORD") {
            for line in String(decoding: record, as: UTF8.self).split(separator: "\n") {
                guard let path = Self.firstCSVField(line), !path.isEmpty else { continue }
                if let rel = Self.clean(d.site + "/" + path) { out.append(rel) }
            }
        } else if let top = try? FS.readFile(root + "/" + d.distInfo + "/top_level.txt") {
            for name in String(decoding: top, as: UTF8.self).split(separator: "\n") where !name.isEmpty {
                out.append(d.site + "/" + name)
                out.append(d.site + "/" + name + ".py")
            }
        }
        return out
    }

    /// RECORD is CSV: a path with a comma is quoted.
    static func firstCSVField(_ line: Substring) -> String? {
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
    static func clean(_ p: String) -> String? {
        var parts: [Substring] = []
        for c in p.split(separator: "/") {
            if c == "." || c.isEmpty { continue }
            if c == ".." { if parts.popLast() == nil { return nil }; continue }
            parts.append(c)
        }
        return parts.joined(separator: "/")
    }

    /// Installed names close to `query`, for "did you mean".
    func nearMatches(_ query: String, in dists: [Distribution]) -> [String] {
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
