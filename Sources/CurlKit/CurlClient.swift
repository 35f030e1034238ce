import CCurl
import Synchronization

/// libcurl is loaded and initialised once per process, when the first client is made (a global
/// is initialised on first use): commands that never reach an HTTP or S3 store never load it.
/// nil once it is ready, else why it is not.
private let curlLoadError: String? = ccurl_load().map { String(cString: $0) }

/// One easy handle and its error buffer. Used by one thread at a time: a handle is either in the
/// client's idle list or checked out by exactly one `perform`.
final class EasyHandle: @unchecked Sendable {
    let raw: UnsafeMutableRawPointer
    let errorBuffer: UnsafeMutablePointer<CChar>

    init?(share: UnsafeMutableRawPointer?) {
        guard let h = ccurl_easy_init() else { return nil }
        raw = h
        errorBuffer = .allocate(capacity: Int(CURL_ERROR_SIZE) + 1)
        errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        if let share { _ = ccurl_setopt_share(h, share) }
    }

    deinit {
        ccurl_easy_cleanup(raw)
        errorBuffer.deallocate()
    }
}

/// What a transfer writes into while it runs; touched only by the thread running it.
private final class TransferState {
    var body: [UInt8] = []
    var headers: [(name: String, value: String)] = []
}

/// The pointer to the share object, created once and never freed (it outlives every handle).
private struct SharePointer: @unchecked Sendable {
    let raw: UnsafeMutableRawPointer?
}

/// Blocking HTTP over libcurl for many threads at once. Each call checks an easy handle out of an
/// idle pool (creating one if none is idle), runs the transfer on the calling thread and checks
/// the handle back in, so connections stay open for the next call. DNS results and TLS sessions
/// are shared between all handles through a curl share object.
public final class CurlClient: Sendable {
    public let settings: CurlSettings
    private let share: SharePointer
    private let idle = Mutex<[EasyHandle]>([])
    private let handlesCreated = Atomic<Int>(0)
    private let connectionsOpened = Atomic<Int>(0)
    private let requestsPerformed = Atomic<Int>(0)

    /// A process-wide client with default settings.
    public static let shared = CurlClient()

    public init(settings: CurlSettings = CurlSettings()) {
        self.settings = settings
        share = SharePointer(raw: curlLoadError == nil ? ccurl_share_create(settings.shareConnections ? 1 : 0) : nil)
    }

    /// Easy handles created so far (at most the peak number of concurrent callers).
    public var handleCount: Int { handlesCreated.load(ordering: .relaxed) }
    /// New connections libcurl had to open (CURLINFO_NUM_CONNECTS summed): low when reuse works.
    public var connectionCount: Int { connectionsOpened.load(ordering: .relaxed) }
    public var requestCount: Int { requestsPerformed.load(ordering: .relaxed) }

    /// libcurl's version string, e.g. "libcurl/7.88.1 OpenSSL/3.0.19 …".
    public static var version: String { curlLoadError ?? String(cString: ccurl_version()) }

    private func checkOut() throws(CurlError) -> EasyHandle {
        if let h = idle.withLock({ $0.popLast() }) { return h }
        if let why = curlLoadError { throw CurlError(kind: .invalid, code: -1, message: why, url: "") }
        guard let h = EasyHandle(share: share.raw) else {
            throw CurlError(kind: .other, code: -1, message: "curl_easy_init failed", url: "")
        }
        handlesCreated.add(1, ordering: .relaxed)
        return h
    }

    private func checkIn(_ h: EasyHandle) {
        let keep = settings.maxIdleHandles
        idle.withLock { list in
            if list.count < keep { list.append(h) }
        }
    }

    /// Runs one request to completion. HTTP error statuses are responses, not errors; a thrown
    /// `CurlError` means no complete response arrived.
    public func perform(_ request: CurlRequest) throws(CurlError) -> CurlResponse {
        let handle = try checkOut()
        defer { checkIn(handle) }
        requestsPerformed.add(1, ordering: .relaxed)
        let h = handle.raw
        ccurl_easy_reset(h)
        handle.errorBuffer[0] = 0

        var failed: CURLcode?
        func set(_ code: CURLcode) { if code.rawValue != CURLE_OK.rawValue, failed == nil { failed = code } }

        set(ccurl_setopt_str(h, CURLOPT_URL, request.url))
        set(ccurl_setopt_ptr(h, CURLOPT_ERRORBUFFER, UnsafeMutableRawPointer(handle.errorBuffer)))
        set(ccurl_setopt_long(h, CURLOPT_NOSIGNAL, 1))
        set(ccurl_setopt_long(h, CURLOPT_TCP_KEEPALIVE, 1))
        set(ccurl_setopt_long(h, CURLOPT_FOLLOWLOCATION, 0))
        set(ccurl_setopt_long(h, CURLOPT_HTTP_VERSION, settings.http2 ? Int(CURL_HTTP_VERSION_2TLS) : Int(CURL_HTTP_VERSION_1_1)))
        // Proxies: nothing set here, so libcurl reads http_proxy / https_proxy / no_proxy itself.
        var total = settings.totalTimeout > 0 ? settings.totalTimeout : Double.infinity
        if let t = request.timeout { total = min(total, t) }
        if total.isFinite { set(ccurl_setopt_long(h, CURLOPT_TIMEOUT_MS, max(1, Int(total * 1000)))) }
        set(ccurl_setopt_long(h, CURLOPT_CONNECTTIMEOUT_MS, max(1, Int(min(settings.connectTimeout, total) * 1000))))
        set(ccurl_setopt_long(h, CURLOPT_LOW_SPEED_LIMIT, settings.lowSpeedLimit))
        set(ccurl_setopt_long(h, CURLOPT_LOW_SPEED_TIME, settings.lowSpeedTime))
        if !settings.verifyTLS {
            set(ccurl_setopt_long(h, CURLOPT_SSL_VERIFYPEER, 0))
            set(ccurl_setopt_long(h, CURLOPT_SSL_VERIFYHOST, 0))
        }
        if let ca = settings.caBundle {
            set(ccurl_setopt_str(h, CURLOPT_CAINFO, ca))
            set(ccurl_setopt_ptr(h, CURLOPT_CAPATH, nil))
        }

        var headerLines = request.headers.map { "\($0.name): \($0.value)" }
        switch request.method {
        case .get:
            set(ccurl_setopt_long(h, CURLOPT_HTTPGET, 1))
        case .head:
            set(ccurl_setopt_long(h, CURLOPT_NOBODY, 1))
        case .delete:
            set(ccurl_setopt_str(h, CURLOPT_CUSTOMREQUEST, "DELETE"))
        case .put, .post:
            let body = request.body ?? []
            set(ccurl_setopt_str(h, CURLOPT_CUSTOMREQUEST, request.method.rawValue))
            set(ccurl_setopt_off(h, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(body.count)))
            if body.isEmpty {
                set(ccurl_setopt_str(h, CURLOPT_COPYPOSTFIELDS, ""))
            } else {
                // SAFETY: COPYPOSTFIELDS copies POSTFIELDSIZE bytes during this call; the buffer outlives it.
                body.withUnsafeBytes { set(ccurl_setopt_ptr(h, CURLOPT_COPYPOSTFIELDS, UnsafeMutableRawPointer(mutating: $0.baseAddress))) }
            }
            // A body goes out at once: no 100-continue round trip, and never a form content type.
            // (Not under libcurl's signer: 7.88 signs the empty "Expect:" line as a header it then
            // does not send, and the server refuses the signature.)
            if request.sigv4 == nil { headerLines.append("Expect:") }
            if !request.headers.contains(where: { $0.name.lowercased() == "content-type" }) {
                headerLines.append("Content-Type: application/octet-stream")
            }
        }
        if let r = request.range { set(ccurl_setopt_str(h, CURLOPT_RANGE, "\(r.lowerBound)-\(r.upperBound)")) }
        if let s = request.sigv4 {
            set(ccurl_setopt_str(h, CURLOPT_AWS_SIGV4, "aws:amz:\(s.region):\(s.service)"))
            set(ccurl_setopt_str(h, CURLOPT_USERNAME, s.accessKey))
            set(ccurl_setopt_str(h, CURLOPT_PASSWORD, s.secretKey))
        }
        var slist: UnsafeMutablePointer<curl_slist>?
        for line in headerLines { slist = ccurl_slist_append(slist, line) }
        defer { ccurl_slist_free_all(slist) }
        if slist != nil { set(ccurl_setopt_slist(h, CURLOPT_HTTPHEADER, slist)) }

        let state = TransferState()
        let writeFn: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = { ptr, size, n, user in
            let count = size * n
            guard let ptr, let user else { return count }
            // SAFETY: `user` is the TransferState kept alive by withExtendedLifetime around curl_easy_perform.
            let st = Unmanaged<TransferState>.fromOpaque(user).takeUnretainedValue()
            // SAFETY: libcurl passes `count` readable bytes at `ptr` for the duration of the callback.
            st.body.append(contentsOf: UnsafeRawBufferPointer(start: ptr, count: count))
            return count
        }
        let headerFn: @convention(c) (UnsafeMutablePointer<CChar>?, Int, Int, UnsafeMutableRawPointer?) -> Int = { ptr, size, n, user in
            let count = size * n
            guard let ptr, let user else { return count }
            // SAFETY: as in writeFn: the state outlives the transfer.
            let st = Unmanaged<TransferState>.fromOpaque(user).takeUnretainedValue()
            // SAFETY: libcurl passes one header line of `count` bytes, valid during the callback.
            let line = String(decoding: UnsafeRawBufferPointer(start: ptr, count: count), as: UTF8.self)
            if line.hasPrefix("HTTP/") {
                st.headers.removeAll()  // a new response (after 100-continue or a redirect)
            } else if let colon = line.firstIndex(of: ":") {
                let name = String(line[..<colon])
                let value = line[line.index(after: colon)...].trimmingCharacters(" \t\r\n")
                st.headers.append((name: name, value: value))
                // One allocation for the body instead of doubling as it arrives (bounded: the
                // header is the server's word, not a promise).
                if name.lowercased() == "content-length", let size = Int(value), size > 0 {
                    st.body.reserveCapacity(min(size, 64 << 20))
                }
            }
            return count
        }
        set(ccurl_setopt_write_fn(h, writeFn))
        set(ccurl_setopt_header_fn(h, headerFn))
        let opaque = Unmanaged.passUnretained(state).toOpaque()
        set(ccurl_setopt_ptr(h, CURLOPT_WRITEDATA, opaque))
        set(ccurl_setopt_ptr(h, CURLOPT_HEADERDATA, opaque))

        if let failed {
            throw CurlError(kind: .invalid, code: Int(failed.rawValue),
                            message: "setting up the request failed: " + String(cString: ccurl_easy_strerror(failed)), url: request.url)
        }

        let rc = withExtendedLifetime(state) { ccurl_easy_perform(h) }

        var conns = 0
        _ = ccurl_getinfo_long(h, CURLINFO_NUM_CONNECTS, &conns)
        connectionsOpened.add(conns, ordering: .relaxed)

        if rc.rawValue != CURLE_OK.rawValue {
            let detail = String(cString: handle.errorBuffer)
            let text = detail.isEmpty ? String(cString: ccurl_easy_strerror(rc)) : detail
            throw CurlError(kind: Self.classify(rc), code: Int(rc.rawValue), message: text, url: request.url)
        }
        var status = 0
        _ = ccurl_getinfo_long(h, CURLINFO_RESPONSE_CODE, &status)
        let response = CurlResponse(status: status, headers: state.headers, body: state.body)
        // A body shorter or longer than announced is a broken transfer, whatever libcurl made of it.
        if request.method != .head, status != 204, status != 304,
           response.header("Content-Encoding") == nil,
           let cl = response.header("Content-Length").flatMap({ Int($0) }), cl != state.body.count {
            throw CurlError(kind: .truncated, code: Int(CURLE_PARTIAL_FILE.rawValue),
                            message: "body has \(state.body.count) bytes, Content-Length said \(cl)", url: request.url)
        }
        return response
    }

    static func classify(_ rc: CURLcode) -> CurlError.Kind {
        switch rc.rawValue {
        case CURLE_COULDNT_RESOLVE_HOST.rawValue, CURLE_COULDNT_RESOLVE_PROXY.rawValue:
            return .dns
        case CURLE_COULDNT_CONNECT.rawValue:
            return .connect
        case CURLE_OPERATION_TIMEDOUT.rawValue:
            return .timeout
        case CURLE_SSL_CONNECT_ERROR.rawValue, CURLE_PEER_FAILED_VERIFICATION.rawValue,
             CURLE_SSL_CERTPROBLEM.rawValue, CURLE_SSL_CIPHER.rawValue, CURLE_SSL_CACERT_BADFILE.rawValue,
             CURLE_SSL_ENGINE_NOTFOUND.rawValue, CURLE_SSL_PINNEDPUBKEYNOTMATCH.rawValue,
             CURLE_SSL_INVALIDCERTSTATUS.rawValue, CURLE_SSL_CRL_BADFILE.rawValue, CURLE_SSL_ISSUER_ERROR.rawValue:
            return .tls
        case CURLE_RECV_ERROR.rawValue, CURLE_SEND_ERROR.rawValue, CURLE_GOT_NOTHING.rawValue,
             CURLE_HTTP2.rawValue, CURLE_HTTP2_STREAM.rawValue, CURLE_WEIRD_SERVER_REPLY.rawValue:
            return .reset
        case CURLE_PARTIAL_FILE.rawValue:
            return .truncated
        case CURLE_URL_MALFORMAT.rawValue, CURLE_UNSUPPORTED_PROTOCOL.rawValue,
             CURLE_BAD_FUNCTION_ARGUMENT.rawValue, CURLE_NOT_BUILT_IN.rawValue, CURLE_UNKNOWN_OPTION.rawValue:
            return .invalid
        default:
            return .other
        }
    }
}

extension Substring {
    /// The text without leading and trailing characters among `set` (compared as scalars, so a
    /// CR LF pair is two characters here, not one grapheme).
    func trimmingCharacters(_ set: String) -> String {
        let chars = Set(set.unicodeScalars)
        var s = self.unicodeScalars[...]
        while let f = s.first, chars.contains(f) { s = s.dropFirst() }
        while let l = s.last, chars.contains(l) { s = s.dropLast() }
        return String(String.UnicodeScalarView(s))
    }
}
