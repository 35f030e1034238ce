import Glibc
import SysKit

/// The CLI's side of the control channel.
public enum ControlClient {
    public struct NoDaemon: Error, CustomStringConvertible {
        public let mountpoint: String
        public let reason: String
        public var description: String {
            "no envmount daemon serves \(mountpoint) (\(reason)); `envmount status` lists the mounts"
        }
    }

    /// Seconds a request may wait for the daemon's reply.
    static let replyTimeout: Double = 60

    /// Sends one request to the daemon serving `mountpoint`; a `.failed` reply is thrown.
    public static func send(_ mountpoint: String, _ request: ControlRequest) throws -> ControlReply {
        let path = ControlPaths.socket(for: mountpoint)
        // A socket in a directory that another user controls may be theirs, answering for the daemon.
        if FS.exists(ControlPaths.directory()) {
            do { try SecureDirectory.check(ControlPaths.directory()) } catch { throw MountError("control socket \(error)") }
        }
        let fd: FileDescriptor
        do { fd = try UnixSocket.connect(path) } catch {
            let mounted = Mountpoints.find(mountpoint)
            throw NoDaemon(mountpoint: mountpoint, reason: mounted == nil ? "it is not mounted" : "its control socket \(path) does not answer: \(error)")
        }
        defer { fd.close() }
        try? UnixSocket.setTimeouts(fd, seconds: replyTimeout)
        try fd.writeAll(try ControlCoding.encodeLine(request))
        let line: [UInt8]
        do { line = try fd.readLine() } catch let e as SystemError where e.errno == EAGAIN {
            throw MountError("the daemon serving \(mountpoint) did not answer within \(Int(replyTimeout)) s")
        }
        let reply: ControlReply
        do { reply = try ControlCoding.decode(ControlReply.self, line) } catch {
            throw MountError("the daemon serving \(mountpoint) sent a reply this envmount cannot read (a different version? restart the mount)")
        }
        if case let .failed(msg) = reply { throw MountError(msg) }
        return reply
    }

    /// The process id of the daemon serving `mountpoint`, from its control socket's peer
    /// credentials (no request is sent); nil when no daemon answers there.
    public static func daemonPid(_ mountpoint: String) -> Int32? {
        if FS.exists(ControlPaths.directory()), (try? SecureDirectory.check(ControlPaths.directory())) == nil { return nil }
        guard let fd = try? UnixSocket.connect(ControlPaths.socket(for: mountpoint)) else { return nil }
        defer { fd.close() }
        return UnixSocket.peerPid(fd)
    }

    public static func status(_ mountpoint: String) throws -> StatusInfo {
        guard case let .status(s) = try send(mountpoint, .status) else { throw unexpected(mountpoint) }
        return s
    }

    /// Starts or inspects warm jobs: the jobs, and how many named paths were not in the tree.
    public static func jobs(_ mountpoint: String, _ request: ControlRequest) throws -> (jobs: [JobInfo], missing: Int) {
        guard case let .jobs(j, missing) = try send(mountpoint, request) else { throw unexpected(mountpoint) }
        return (j, missing)
    }

    public static func saveProfile(_ mountpoint: String, name: String) throws -> (key: String, chunks: Int) {
        guard case let .profileSaved(key, chunks) = try send(mountpoint, .saveProfile(name: name)) else { throw unexpected(mountpoint) }
        return (key, chunks)
    }

    static func unexpected(_ mp: String) -> MountError { MountError("the daemon serving \(mp) gave an unexpected reply") }
}
