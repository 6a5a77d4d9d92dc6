import AWSClient
import AWSSigning
import CarbonStoreTestSupport
import Foundation

/// Starts a loopback server, runs `body`, and always shuts the server down.
func withLoopbackServer<T>(
    _ handler: @escaping LoopbackHTTPServer.Handler, _ body: (LoopbackHTTPServer) async throws -> T
) async throws -> T {
    let server = try await LoopbackHTTPServer.start(handler: handler)
    do {
        let result = try await body(server)
        try await server.shutdown()
        return result
    } catch {
        try? await server.shutdown()
        throw error
    }
}

/// A temporary HOME with nothing in it, removed by `remove()`.
func makeHome() throws -> TemporaryDirectory { try TemporaryDirectory("aws-cred-tests") }

/// Writes `text` at `path`, creating directories.
func write(_ text: String, to path: String) throws {
    try FileManager.default.createDirectory(
        atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
    try text.write(toFile: path, atomically: true, encoding: .utf8)
}

/// An environment in which no credential source is configured and IMDS is off.
func isolatedEnvironment(home: String, _ extra: [String: String] = [:]) -> [String: String] {
    ["HOME": home, "AWS_EC2_METADATA_DISABLED": "true"].merging(extra) { $1 }
}

let transport: any HTTPTransport = AsyncHTTPTransport.shared

/// A provider that counts its calls and answers from a script, optionally after a delay.
final class CountingProvider: CredentialProvider {
    private let state: Locked<(calls: Int, answers: [Result<AWSCredentials, CredentialsError>])>
    let delay: Duration

    init(_ answers: [Result<AWSCredentials, CredentialsError>], delay: Duration = .zero) {
        state = Locked((0, answers))
        self.delay = delay
    }

    var calls: Int { state.withLock { $0.calls } }

    func credentials() async throws -> AWSCredentials {
        let answer = state.withLock { s -> Result<AWSCredentials, CredentialsError> in
            s.calls += 1
            return s.answers.count > 1 ? s.answers.removeFirst() : s.answers[0]
        }
        if delay > .zero { try await Task.sleep(for: delay) }
        return try answer.get()
    }
}

/// A clock the test moves by hand.
final class ManualClock: Sendable {
    private let current: Locked<Date>

    init(_ start: Date = Date(timeIntervalSince1970: 1_800_000_000)) { current = Locked(start) }

    var now: Date { current.withLock { $0 } }

    func advance(seconds: TimeInterval) { current.withLock { $0 = $0.addingTimeInterval(seconds) } }
}

func keys(_ id: String, expiration: Date? = nil) -> AWSCredentials {
    AWSCredentials(
        accessKeyID: id, secretAccessKey: "secret-\(id)",
        sessionToken: expiration == nil ? nil : "token-\(id)",
        expiration: expiration)
}

let notConfigured = CredentialsError(.notConfigured, source: "fake", problem: "not set up")
