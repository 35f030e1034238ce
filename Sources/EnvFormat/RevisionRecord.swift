import FoundationEssentials

/// `revisions/<env>/<n>`: one immutable record per published revision, JSON. Whoever creates
/// the object first owns number n (an atomic create: `If-None-Match: *` on S3, `link(2)` in a
/// directory), so two publishes at once can never both claim it.
///
/// `ref` holds the exact bytes written to `refs/<env>` for this revision (signature lines
/// included), so an older revision can be mounted and checked as it was published. The
/// installed Python distributions (`packages`) are kept here, not in the manifest.
public struct RevisionRecord: Codable, Sendable, Equatable {
    public var format = 1
    public var env: String
    public var revision: UInt64
    /// Manifest id, 64 hex digits.
    public var manifest: String
    /// Unix seconds.
    public var publishedAt: Int64
    public var host: String
    public var user: String
    /// The source directory on the publishing machine.
    public var source: String
    /// Regular files (hardlinks counted once), and their bytes: the logical size.
    public var files: Int
    public var fileBytes: UInt64
    /// Distinct chunks of the manifest and their compressed size: what storing it whole costs.
    public var chunks: Int
    public var storedBytes: UInt64
    /// Compressed bytes this publish uploaded (chunks the store lacked).
    public var uploadedBytes: UInt64
    public var excludedFiles: Int
    public var excludedBytes: UInt64
    /// Set when `envpublish rollback` made an older revision current again.
    public var rollbackOf: UInt64?
    /// `version` from pyvenv.cfg.
    public var python: String?
    public var packages: [Distribution]
    /// The bytes of `refs/<env>` for this revision.
    public var ref: String

    public init(env: String, revision: UInt64, manifest: String, publishedAt: Int64, host: String, user: String,
                source: String, files: Int, fileBytes: UInt64, chunks: Int, storedBytes: UInt64, uploadedBytes: UInt64,
                excludedFiles: Int = 0, excludedBytes: UInt64 = 0, rollbackOf: UInt64? = nil, python: String? = nil,
                packages: [Distribution] = [], ref: String = "") {
        self.env = env; self.revision = revision; self.manifest = manifest; self.publishedAt = publishedAt
        self.host = host; self.user = user; self.source = source; self.files = files; self.fileBytes = fileBytes
        self.chunks = chunks; self.storedBytes = storedBytes; self.uploadedBytes = uploadedBytes
        self.excludedFiles = excludedFiles; self.excludedBytes = excludedBytes; self.rollbackOf = rollbackOf
        self.python = python; self.packages = packages; self.ref = ref
    }

    public static func prefix(env: String) -> String { "revisions/\(env)/" }
    public static func objectKey(env: String, revision: UInt64) -> String { "revisions/\(env)/\(revision)" }

    /// The revision number a key under `revisions/<env>/` names, if it is one.
    public static func revision(fromKey key: String) -> UInt64? {
        guard let slash = key.lastIndex(of: "/") else { return nil }
        let tail = key[key.index(after: slash)...]
        guard !tail.isEmpty, tail.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), tail.first != "0" else { return nil }
        return UInt64(tail)
    }

    public var manifestID: ChunkID? { ChunkID(hex: manifest) }
    public var refBytes: [UInt8] { Array(ref.utf8) }

    public func encode() throws -> [UInt8] {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .prettyPrinted]
        return Array(try e.encode(self)) + [0x0a]
    }

    public static func decode(_ bytes: [UInt8]) throws -> RevisionRecord {
        guard bytes.count < 64 << 20 else { throw FormatError("revision record is too large") }
        let r: RevisionRecord
        do { r = try JSONDecoder().decode(RevisionRecord.self, from: Data(bytes)) } catch {
            throw FormatError("not a revision record: \(error)")
        }
        guard r.format == 1 else { throw FormatError("revision record format \(r.format) is not supported") }
        guard r.manifestID != nil else { throw FormatError("revision record names an invalid manifest '\(r.manifest)'") }
        return r
    }
}

/// One installed Python distribution, read from `*.dist-info/METADATA` (and `direct_url.json`).
public struct Distribution: Codable, Sendable, Equatable, Hashable {
    /// As the METADATA `Name:` field spells it (pip freeze prints this).
    public var name: String
    public var version: String
    /// For a direct install (PEP 610): the URL or path it was installed from.
    public var url: String?
    public var editable: Bool
    /// The line `pip freeze` prints for it (`name==version`, `name @ url`, `-e path`).
    public var requirement: String

    public init(name: String, version: String, url: String? = nil, editable: Bool = false, requirement: String? = nil) {
        self.name = name; self.version = version; self.url = url; self.editable = editable
        self.requirement = requirement ?? "\(name)==\(version)"
    }

    /// PEP 503: lower case, runs of `-`, `_`, `.` become one `-`.
    public var canonicalName: String { Self.canonicalize(name) }

    public static func canonicalize(_ name: String) -> String {
        var out = ""
        var lastSep = false
        for c in name.lowercased() {
            if c == "-" || c == "_" || c == "." {
                if !lastSep { out.append("-") }
                lastSep = true
            } else {
                out.append(c)
                lastSep = false
            }
        }
        return out
    }
}
