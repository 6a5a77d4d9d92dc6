import CarbonStoreTestSupport
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

// Helpers for the tests over a real socket: a `carbonstore serve` subprocess, and a small HTTP/1.1
// client on raw sockets (so that a test can also trickle bytes or send a partial request).

/// A failure of the test machinery itself (a server that never listened, a response that never came).
struct SocketTestError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Runs blocking work (a socket read, a process wait) on a thread of its own, off Swift's
/// cooperative pool, so that a test that waits never starves the others.
func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
    }
}

/// A running `carbonstore` process (usually `serve`), its output collected as it comes
/// (`CommandRunner.Running`). Call `stop()` in a `defer`: it kills the process if it still runs.
final class ServeProcess: Sendable {
    let running: CommandRunner.Running

    /// Starts `carbonstore arguments` with the test runner's environment minus every
    /// `CARBONSTORE_*` and `AWS_*` variable, plus `environment`, in `directory` if given.
    init(_ arguments: [String], environment: [String: String], directory: String? = nil) throws {
        running = try CommandRunner(environment: environment).start(arguments, directory: directory)
    }

    /// `carbonstore serve --port 0` (any free port) with `environment`.
    static func serve(
        environment: [String: String], arguments: [String] = ["--port", "0"], directory: String? = nil
    ) throws -> ServeProcess {
        try ServeProcess(["serve"] + arguments, environment: environment, directory: directory)
    }

    var pid: Int32 { running.pid }
    var stdout: String { running.stdoutSoFar }
    var stderr: String { running.stderrSoFar }
    var termination: Termination? { running.termination }
    func signal(_ signal: Int32) { running.signal(signal) }
    func waitForExit(timeout: Duration) -> Termination? { running.waitForExit(timeout: timeout) }
    func stop() { running.stop() }

    /// Every whole line on stdout, parsed as a JSON object (nil for a line that is not one).
    var logLines: [(text: String, object: [String: String]?)] {
        let text = stdout
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        lines.removeLast()  // the part after the last newline: empty, or a line still being written
        return lines.map { line in
            (line, (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: String])
        }
    }

    /// Waits until the server logs that it listens, and returns its port.
    func waitForPort(timeout: Duration = .seconds(60)) throws -> Int {
        let deadline = ContinuousClock.now + timeout
        while true {
            for line in logLines {
                if let o = line.object, o["message"] == "listening", let port = o["port"].flatMap(Int.init) {
                    return port
                }
            }
            if let t = termination {
                throw SocketTestError("the server ended (\(t)) before listening; stderr: \(stderr)")
            }
            if ContinuousClock.now > deadline {
                throw SocketTestError("the server did not listen within \(timeout); stdout: \(stdout)")
            }
            Thread.sleep(forTimeInterval: 0.02)
        }
    }

    /// Waits until a log line matches `predicate`, and returns it.
    func waitForLogLine(
        timeout: Duration = .seconds(10), _ predicate: ([String: String]) -> Bool
    ) throws -> [String: String] {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let o = logLines.compactMap(\.object).first(where: predicate) { return o }
            if ContinuousClock.now > deadline {
                throw SocketTestError("no matching log line within \(timeout); stdout: \(stdout)")
            }
            Thread.sleep(forTimeInterval: 0.02)
        }
    }
}

/// A response read off a socket.
struct HTTPResponse: Sendable, CustomStringConvertible {
    var status: Int
    /// Header names in lowercase, in the order received.
    var headers: [(name: String, value: String)]
    var body: [UInt8]

    func header(_ name: String) -> String? {
        headers.first { $0.name == name.lowercased() }?.value
    }

    var text: String { String(decoding: body, as: UTF8.self) }

    /// The body as a JSON object, or nil.
    var json: [String: Any]? { (try? JSONSerialization.jsonObject(with: Data(body))) as? [String: Any] }

    /// `error` of the JSON error body, or nil.
    var error: [String: Any]? { json?["error"] as? [String: Any] }

    var description: String {
        "\(status) \(headers.map { "\($0.name): \($0.value)" }.joined(separator: "; ")) \(text.prefix(500))"
    }
}

/// One TCP connection to 127.0.0.1, with deadlines on every read. Used by one thread at a time.
extension RawConnection {
    /// Sends spaces, 64 KiB at a time, until a send fails, 256 MiB have gone, or 5 s have passed:
    /// the bytes sent.
    func sendSpacesUntilRefused() -> Int {
        let chunk = [UInt8](repeating: 0x20, count: 64 << 10)
        var sent = 0
        let started = ContinuousClock.now
        while sent < 256 << 20, ContinuousClock.now - started < .seconds(5) {
            do { try send(chunk) } catch { break }
            sent += chunk.count
        }
        return sent
    }
}

final class RawConnection: @unchecked Sendable {
    let fd: Int32
    private var buffer: [UInt8] = []
    private var closed = false

    /// Connects to the port on loopback; `receiveBuffer` makes the socket's receive buffer small,
    /// so that a client that does not read soon stops the server's writes.
    init(port: Int, receiveBuffer: Int32? = nil) throws {
        let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard s >= 0 else { throw SocketTestError("socket: errno \(errno)") }
        if var size = receiveBuffer {
            _ = setsockopt(s, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        var one: Int32 = 1
        _ = setsockopt(s, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port)).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(s, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard rc == 0 else {
            let e = errno
            Glibc.close(s)
            throw SocketTestError("connect to port \(port): errno \(e)")
        }
        fd = s
    }

    deinit { Glibc.close(fd) }

    /// Sends all of `bytes`; throws if the peer has closed or reset the connection.
    func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes {
                Glibc.send(fd, $0.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            }
            guard n > 0 else { throw SocketTestError("send: errno \(errno)") }
            offset += n
        }
    }

    func send(_ text: String) throws { try send(Array(text.utf8)) }

    /// Waits up to `timeout` for something to read (data, the end of the stream or a reset).
    func readable(within timeout: Duration) -> Bool {
        if !buffer.isEmpty || closed { return true }
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ms = Int32(max(0, timeout.wholeMilliseconds))
        return poll(&p, 1, ms) > 0
    }

    /// Reads once what is there, waiting up to `timeout`; false when the connection ended (closed
    /// or reset) or nothing came in time.
    @discardableResult
    private func fill(until deadline: ContinuousClock.Instant) throws -> Bool {
        guard !closed else { return false }
        let left = deadline - ContinuousClock.now
        guard left > .zero else { return false }
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let ready = poll(&p, 1, Int32(max(1, left.wholeMilliseconds)))
        guard ready > 0 else { return false }
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n > 0 {
            buffer += chunk[0..<n]
            return true
        }
        if n == 0 || errno == ECONNRESET || errno == EPIPE {
            closed = true
            return false
        }
        throw SocketTestError("recv: errno \(errno)")
    }

    /// Reads one whole response (Content-Length, chunked, or up to the end of the stream).
    func readResponse(timeout: Duration = .seconds(30)) throws -> HTTPResponse {
        let deadline = ContinuousClock.now + timeout
        func more() throws {
            if try !fill(until: deadline) {
                if closed { throw SocketTestError("the connection ended before a whole response: \(text)") }
                throw SocketTestError("no whole response within \(timeout): \(text)")
            }
        }
        var headEnd: Int?
        while headEnd == nil {
            headEnd = Self.find([13, 10, 13, 10], in: buffer)
            if headEnd == nil { try more() }
        }
        let head = String(decoding: buffer[0..<headEnd!], as: UTF8.self)
        var lines = head.components(separatedBy: "\r\n")
        let statusLine = lines.removeFirst().split(separator: " ")
        guard statusLine.count >= 2, let status = Int(statusLine[1]) else {
            throw SocketTestError("not a status line: \(head)")
        }
        let headers = lines.compactMap { line -> (name: String, value: String)? in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (
                line[..<colon].lowercased(),
                line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            )
        }
        var rest = Array(buffer[(headEnd! + 4)...])
        buffer = []
        func header(_ name: String) -> String? { headers.first { $0.name == name }?.value }
        var body: [UInt8] = []
        if let length = header("content-length").flatMap(Int.init) {
            while rest.count < length {
                buffer = rest
                try more()
                rest = buffer
            }
            body = Array(rest[0..<length])
            buffer = Array(rest[length...])
        } else if header("transfer-encoding")?.lowercased() == "chunked" {
            while true {
                buffer = rest
                while Self.find([13, 10], in: buffer) == nil { try more() }
                let lineEnd = Self.find([13, 10], in: buffer)!
                let sizeText = String(decoding: buffer[0..<lineEnd], as: UTF8.self)
                guard let size = Int(sizeText.split(separator: ";")[0], radix: 16) else {
                    throw SocketTestError("bad chunk size '\(sizeText)'")
                }
                while buffer.count < lineEnd + 2 + size + 2 { try more() }
                body += buffer[(lineEnd + 2)..<(lineEnd + 2 + size)]
                rest = Array(buffer[(lineEnd + 2 + size + 2)...])
                if size == 0 {
                    buffer = rest
                    break
                }
            }
        } else {
            buffer = rest
            while try fill(until: deadline) {}
            guard closed else { throw SocketTestError("the body did not end within \(timeout)") }
            body = buffer
            buffer = []
        }
        return HTTPResponse(status: status, headers: headers, body: body)
    }

    /// Reads and drops everything until the server closes or resets the connection; the time
    /// that took, or nil if it stayed open for `timeout`.
    func waitForClose(timeout: Duration) throws -> Duration? {
        let start = ContinuousClock.now
        let deadline = start + timeout
        while !closed, ContinuousClock.now < deadline {
            buffer = []
            try fill(until: deadline)
        }
        return closed ? ContinuousClock.now - start : nil
    }

    /// True once a read found the connection closed or reset.
    var isClosed: Bool { closed }

    private var text: String { String(decoding: buffer.prefix(500), as: UTF8.self) }

    static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for i in 0...(haystack.count - needle.count)
        where haystack[i..<(i + needle.count)].elementsEqual(needle) {
            return i
        }
        return nil
    }

    /// The bytes of a request: `Host`, the headers, `Content-Length` when there is a body, and
    /// `Connection: close` unless `keepAlive`.
    static func request(
        _ method: String, _ path: String, headers: [(String, String)] = [], body: String? = nil,
        keepAlive: Bool = false
    ) -> String {
        var text = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        if !keepAlive { text += "Connection: close\r\n" }
        for (name, value) in headers { text += "\(name): \(value)\r\n" }
        if let body { text += "Content-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n" }
        return text + "\r\n" + (body ?? "")
    }
}

/// One request on a new connection with `Connection: close`; the whole response.
func httpRequest(
    port: Int, _ method: String, _ path: String, headers: [(String, String)] = [], body: String? = nil,
    timeout: Duration = .seconds(30)
) async throws -> HTTPResponse {
    try await offPool {
        let c = try RawConnection(port: port)
        try c.send(RawConnection.request(method, path, headers: headers, body: body))
        return try c.readResponse(timeout: timeout)
    }
}

func bearer(_ key: String) -> (String, String) { ("Authorization", "Bearer \(key)") }

/// A key made by `carbonstore keys new --role role`: the key, and the entry to configure.
func newKey(role: String) throws -> (key: String, entry: String) {
    let out = try CommandRunner().run(["keys", "new", "--role", role])
    guard out.status == 0 else { throw SocketTestError("keys new failed: \(out.stderr)") }
    func value(_ label: String) -> String? {
        out.stdout.split(separator: "\n").first { $0.hasPrefix(label) }.map {
            $0.dropFirst(label.count).trimmingCharacters(in: .whitespaces)
        }
    }
    guard let key = value("key:"), let entry = value("entry:") else {
        throw SocketTestError("keys new printed no key or entry: \(out.stdout)")
    }
    return (key, entry)
}

/// A batch of one transaction, as the API takes it.
func transactionBatch(id: String) -> String {
    #"{"transactions": [{"id": "\#(id)", "time": "2026-03-01T12:00:00Z", "amount": {"amount": "12.34", "currency": "EUR"}}]}"#
}

extension Duration {
    var wholeMilliseconds: Int64 {
        let (s, a) = components
        return s * 1000 + a / 1_000_000_000_000_000
    }

    var inSeconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
