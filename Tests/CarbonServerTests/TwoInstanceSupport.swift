import CarbonStoreTestSupport
import Foundation
import HTTPTypes
import HummingbirdTesting
import NIOCore
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// One `carbonstore serve` process (the built binary) on a port of its own choosing (`--port 0`),
/// for the two-instance tests: a `ServeProcess` with a label and its port.
final class ServeInstance: Sendable {
    let label: String
    let port: Int
    let server: ServeProcess

    private init(label: String, port: Int, server: ServeProcess) {
        self.label = label
        self.port = port
        self.server = server
    }

    var stderrText: String { server.stderr }

    /// Starts `carbonstore serve --port 0` with `environment` (over the variables CommandRunner
    /// keeps) and waits until it listens. The process is killed if it does not start in time.
    static func start(label: String, environment: [String: String], timeout: Duration = .seconds(30))
        async throws -> ServeInstance
    {
        let server = try ServeProcess.serve(
            environment: environment, arguments: ["--host", "127.0.0.1", "--port", "0"])
        do {
            let port = try await offPool { try server.waitForPort(timeout: timeout) }
            return ServeInstance(label: label, port: port, server: server)
        } catch {
            server.stop()
            throw ServeInstanceError("serve instance \(label): \(error)")
        }
    }

    /// Sends SIGTERM and waits for the exit; SIGKILL after `deadline`. Returns the exit status, or
    /// nil when it had to be killed.
    func stop(deadline: Duration = .seconds(15)) async -> Int32? {
        server.signal(SIGTERM)
        let end = try? await offPool { [server] in server.waitForExit(timeout: deadline) }
        guard case .exit(let status)? = end else {
            server.stop()
            return nil
        }
        return status
    }

    /// Kills the process at once if it still runs (for every exit path of a test).
    func forceStop() { server.stop() }
}

struct ServeInstanceError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// What one HTTP request answered.
struct HTTPAnswer: Sendable {
    var status: Int
    var retryAfter: String?
    var body: String

    var json: [String: Any]? {
        (try? JSONSerialization.jsonObject(with: Data(body.utf8))) as? [String: Any]
    }
}

/// Sends one request to 127.0.0.1:`port` on a connection of its own, with the key as a bearer token.
func sendHTTP(port: Int, _ method: HTTPRequest.Method, _ path: String, key: String, body: String? = nil)
    async throws -> HTTPAnswer
{
    try await TestClient.withClient(
        host: "127.0.0.1", port: port, configuration: .init(timeout: .seconds(30))
    ) { client in
        var headers: HTTPFields = [.authorization: "Bearer \(key)"]
        if body != nil { headers[.contentType] = "application/json" }
        let response = try await client.execute(
            TestClient.Request(
                path, method: method, authority: "127.0.0.1:\(port)", headers: headers,
                body: body.map { ByteBuffer(string: $0) }))
        return HTTPAnswer(
            status: Int(response.status.code), retryAfter: response.headers[.retryAfter],
            body: response.body.map { String(buffer: $0) } ?? "")
    }
}

extension MotoEnvironment {
    static var enabled: ConditionTrait {
        .enabled(if: testsEnabled, "needs moto: run through scripts/test.sh or scripts/with_moto.sh")
    }

    /// S3 with DynamoDB locks under a fresh prefix, so that runs never see each other's users.
    func storageURI(label: String) -> String {
        s3URI(prefix: Self.uniquePrefix(label), extra: "&region=\(region)")
    }
}
