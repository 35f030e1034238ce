import CurlKit
import SysKit

/// Conditional PUTs (`If-None-Match: *`, `If-Match: <ETag>`; AWS S3 since 2024, R2, MinIO,
/// moto 5.2), ListObjectsV2 with sizes and times, DeleteObjects in batches of 1,000.
extension S3Store: ConsistentStore {
    /// A PUT with one precondition header: true when stored, false on 412 (the precondition
    /// failed) or 409 (a concurrent conditional write is in progress; AWS asks to retry).
    func conditionalPut(_ key: String, _ bytes: [UInt8], _ header: (String, String)) throws -> Bool {
        let r: CurlResponse = try retry.run(key: key, bases: [config.endpoint]) { _, left in
            do throws(CurlError) {
                let r = try self.send(.put, objectKey: self.prefix + key, body: bytes, rawSlash: false, timeLeft: left,
                                      extraHeaders: [header])
                if r.status == 412 || r.status == 409 { return .success(r) }
                return self.judge(r, key: key)
            } catch {
                return Remote.attempt(error, key: key, store: self.description)
            }
        }
        return (200...299).contains(r.status)
    }

    public func createExclusive(_ key: String, _ bytes: [UInt8]) throws -> Bool {
        try conditionalPut(key, bytes, ("If-None-Match", "*"))
    }

    public func getVersioned(_ key: String) throws -> VersionedObject? {
        do {
            let r = try call(.get, key: key, objectKey: prefix + key)
            guard let etag = r.header("ETag") else {
                throw StoreError.failed(key: key, store: description, detail: "the response has no ETag, so the object cannot be compared-and-swapped")
            }
            return VersionedObject(bytes: r.body, version: etag)
        } catch let e as StoreError where e.isNotFound {
            return nil
        }
    }

    public func putIfVersion(_ key: String, _ bytes: [UInt8], expected: String?) throws -> Bool {
        try conditionalPut(key, bytes, expected.map { ("If-Match", $0) } ?? ("If-None-Match", "*"))
    }

    public func listDetailed(prefix p: String) throws -> [ObjectInfo] {
        var out: [ObjectInfo] = []
        var token: String?
        let full = prefix + p
        repeat {
            var q: [(String, String)] = [("list-type", "2"), ("prefix", full)]
            if let t = token { q.append(("continuation-token", t)) }
            let r = try call(.get, key: p, objectKey: nil, query: q)
            for block in Self.xmlValues("Contents", in: r.body) {
                let b = Array(block.utf8)
                guard let k = Self.xmlValue("Key", in: b), k.hasPrefix(prefix) else { continue }
                let size = Self.xmlValue("Size", in: b).flatMap { UInt64($0) } ?? 0
                let modified = Self.xmlValue("LastModified", in: b).flatMap(Self.parseISO8601) ?? 0
                out.append(ObjectInfo(key: String(k.dropFirst(prefix.count)), size: size, modified: modified))
            }
            token = Self.xmlValue("IsTruncated", in: r.body) == "true" ? Self.xmlValue("NextContinuationToken", in: r.body) : nil
        } while token != nil
        return out
    }

    /// DeleteObjects, 1,000 keys a request (S3's limit), quiet mode: only failures are listed.
    /// The body's integrity header is `x-amz-checksum-sha256` (S3 requires it or Content-MD5).
    @discardableResult
    public func delete(_ keys: [String]) throws -> Int {
        var requests = 0
        var start = 0
        while start < keys.count {
            let batch = keys[start..<min(start + 1000, keys.count)]
            start += batch.count
            var xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Quiet>true</Quiet>"
            for k in batch { xml += "<Object><Key>\(Self.xmlEscape(prefix + k))</Key></Object>" }
            xml += "</Delete>"
            let body = Array(xml.utf8)
            let r: CurlResponse = try retry.run(key: "DeleteObjects", bases: [config.endpoint]) { _, left in
                do throws(CurlError) {
                    let r = try self.send(.post, objectKey: nil, query: [("delete", "")], body: body, rawSlash: false, timeLeft: left,
                                          extraHeaders: [("Content-Type", "application/xml"), ("x-amz-sdk-checksum-algorithm", "SHA256"),
                                                          ("x-amz-checksum-sha256", Base64.encode(SHA256.hash(body)))])
                    return self.judge(r, key: "DeleteObjects")
                } catch {
                    return Remote.attempt(error, key: "DeleteObjects", store: self.description)
                }
            }
            requests += 1
            let errors = Self.xmlValues("Error", in: r.body)
            if let first = errors.first {
                let b = Array(first.utf8)
                throw StoreError.failed(key: Self.xmlValue("Key", in: b) ?? "?", store: description,
                                        detail: "DeleteObjects refused \(errors.count) of \(batch.count) keys: \(Self.xmlValue("Code", in: b) ?? "") \(Self.xmlValue("Message", in: b) ?? "")")
            }
        }
        return requests
    }

    static func xmlEscape(_ s: String) -> String {
        var o = ""
        for c in s {
            switch c {
            case "&": o += "&amp;"
            case "<": o += "&lt;"
            case ">": o += "&gt;"
            case "\"": o += "&quot;"
            case "'": o += "&apos;"
            default: o.append(c)
            }
        }
        return o
    }

    /// `2026-12-01T14:38:31.000Z` → Unix seconds (UTC; fractions dropped).
    public static func parseISO8601(_ s: String) -> Int64? {
        let d = Array(s.utf8)
        guard d.count >= 19 else { return nil }
        func num(_ a: Int, _ n: Int) -> Int64? {
            var v: Int64 = 0
            for i in a..<(a + n) {
                guard d[i] >= 0x30 && d[i] <= 0x39 else { return nil }
                v = v * 10 + Int64(d[i] - 0x30)
            }
            return v
        }
        guard let y = num(0, 4), let m = num(5, 2), let day = num(8, 2), let hh = num(11, 2), let mm = num(14, 2), let ss = num(17, 2) else { return nil }
        // Days from the civil date (Howard Hinnant's algorithm).
        let yy = m <= 2 ? y - 1 : y
        let era = (yy >= 0 ? yy : yy - 399) / 400
        let yoe = yy - era * 400
        let doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        let days = era * 146097 + doe - 719468
        return days * 86400 + hh * 3600 + mm * 60 + ss
    }
}
