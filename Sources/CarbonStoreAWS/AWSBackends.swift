import AWSClient
import CarbonStore
import Foundation

/// Builds the AWS parts of a store from a storage URI: `S3Storage` for `s3:`, and
/// `DynamoDBLockService` for `locking=dynamo`, with credentials, region and endpoints resolved as
/// the AWS SDKs do.
public struct AWSBackends: Sendable {
    public var environment: [String: String]
    public var transport: any HTTPTransport
    public var metrics: RequestMetrics?
    public var retry: RetryPolicy

    public init(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        transport: any HTTPTransport = AsyncHTTPTransport.shared, metrics: RequestMetrics? = nil,
        retry: RetryPolicy = .standard
    ) {
        self.environment = environment
        self.transport = transport
        self.metrics = metrics
        self.retry = retry
    }

    /// A `StoreFactory` that knows the local backends and these.
    public func storeFactory(options: StoreOptions = .init()) -> StoreFactory {
        StoreFactory(providers: [provider], options: options)
    }

    /// The provider to register with `StoreFactory`; nil for URIs that need no AWS.
    public var provider: StoreFactory.Provider {
        let backends = self
        return { uri, options in try await backends.make(uri, options: options) }
    }

    /// Clients for the region and endpoints a URI and the environment name.
    public struct Clients: Sendable {
        public var configuration: AWSConfiguration
        public var s3: S3Client
        public var dynamo: DynamoDBClient
    }

    public func clients(region: String?, endpoint: String?) async throws -> Clients {
        let configuration: AWSConfiguration
        do {
            configuration = try await AWSConfiguration.resolve(
                environment: environment, regionOverride: region, endpointOverride: endpoint,
                transport: transport)
        } catch {
            throw AWSConfigurationStoreError(message: String(describing: error))
        }
        let credentials = RefreshingCredentialProvider(
            CredentialProviderChain.standard(environment: environment, transport: transport))
        func service(_ name: String) -> AWSServiceClient {
            AWSServiceClient(
                service: name, region: configuration.region, endpoint: configuration.endpoint(for: name),
                credentials: credentials, transport: transport, retry: retry, metrics: metrics)
        }
        return Clients(
            configuration: configuration,
            s3: S3Client(client: service("s3"), pathStyle: configuration.usesPathStyle),
            dynamo: DynamoDBClient(client: service("dynamodb")))
    }

    func make(_ uri: StorageURI, options: StoreOptions) async throws -> (any ObjectStorage, any LockService)?
    {
        var needsAWS = false
        if case .s3 = uri.backend { needsAWS = true }
        if case .dynamo = uri.locking { needsAWS = true }
        guard needsAWS else { return nil }
        let clients = try await clients(region: uri.region, endpoint: uri.endpoint)

        let storage: any ObjectStorage
        let namespace: String
        switch uri.backend {
        case .s3(let bucket):
            storage = S3Storage(s3: clients.s3, bucket: bucket, encryption: uri.serverSideEncryption)
            namespace = "s3://\(bucket)/"
        case .path(let dir):
            let path = try PathStorage(root: dir, io: options.fileIO)
            storage = path
            namespace = "path:\(path.root)/"
        case .memory:
            return nil
        }
        let locks: any LockService
        switch uri.locking {
        case .dynamo(let table):
            locks = DynamoDBLockService(
                dynamo: clients.dynamo, table: table, namespace: namespace,
                leaseDuration: .milliseconds(uri.leaseMilliseconds ?? 10_000))
        case .none:
            locks = NoLockService()
        case .local:
            guard let path = storage as? PathStorage else { return nil }
            locks = try FileLockService(root: path.root)
        }
        return (storage, locks)
    }
}

/// The AWS configuration (region, endpoints) could not be resolved.
public struct AWSConfigurationStoreError: CarbonStoreError {
    public var message: String
    public var kind: ErrorKind { .invalidInput }
    public var description: String { message }
}

extension StorageURI {
    /// The `sse` and `sse-kms-key-id` query keys.
    public var serverSideEncryption: ServerSideEncryption? {
        switch sse {
        case "AES256": return .s3
        case "aws:kms": return .kms(keyID: sseKMSKeyID)
        default: return nil
        }
    }
}
