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
    /// How S3 and DynamoDB requests are retried; nil: as the environment and the shared config file
    /// say (AWS_MAX_ATTEMPTS, AWS_RETRY_MODE, `max_attempts`, `retry_mode`: `RetryPolicy.resolve`).
    public var retry: RetryPolicy?

    public init(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        transport: any HTTPTransport = AsyncHTTPTransport.shared, metrics: RequestMetrics? = nil,
        retry: RetryPolicy? = nil
    ) {
        self.environment = environment
        self.transport = transport
        self.metrics = metrics
        self.retry = retry
    }

    /// A `StoreFactory` that knows the local backends and these.
    public func storeFactory(options: StoreOptions = .init()) -> StoreFactory {
        var registry = BackendRegistry.local
        register(in: &registry)
        return StoreFactory(registry: registry, options: options)
    }

    /// Registers `s3:` storage and `locking=dynamo` with a registry.
    public func register(in registry: inout BackendRegistry) {
        let backends = self
        registry.register(storage: "s3") { uri, _ in
            guard case .s3(let bucket) = uri.backend else { preconditionFailure("registered for s3:") }
            let clients = try await backends.clients(region: uri.region, endpoint: uri.endpoint, uses: ["s3"])
            return S3Storage(s3: clients.s3, bucket: bucket, encryption: uri.serverSideEncryption)
        }
        registry.register(locking: "dynamo") { uri, storage, _ in
            guard case .dynamo(let table) = uri.locking else { preconditionFailure("registered for dynamo") }
            let namespace: String
            switch storage {
            case let s3 as S3Storage: namespace = "s3://\(s3.bucket)/"
            case let path as PathStorage: namespace = "path:\(path.root)/"
            default: namespace = "\(uri.scheme):"
            }
            let clients = try await backends.clients(
                region: uri.region, endpoint: uri.endpoint, uses: ["dynamodb"])
            return DynamoDBLockService(
                dynamo: clients.dynamo, table: table, namespace: namespace,
                leaseDuration: .milliseconds(uri.leaseMilliseconds ?? 10_000))
        }
    }

    /// Clients for the region and endpoints a URI and the environment name.
    public struct Clients: Sendable {
        public var configuration: AWSConfiguration
        public var s3: S3Client
        public var dynamo: DynamoDBClient
    }

    /// `overrides` says where `region` and `endpoint` come from, for messages: the storage URI
    /// (the engine) or a command's `--region` and `--endpoint` (`carbonstore aws setup`).
    ///
    /// `uses` names the services that will be called (`s3`, `dynamodb`): endpoint settings that
    /// CarbonStore does not read are refused only where they concern one of them.
    public func clients(
        region: String?, endpoint: String?, overrides: AWSConfiguration.OverrideSource = .storageURI,
        uses: Set<String> = ["s3", "dynamodb"]
    ) async throws -> Clients {
        let configuration: AWSConfiguration
        let retry: RetryPolicy
        // Credentials from web identity (EKS) are asked of STS: its endpoint settings count too.
        var uses = uses
        if ["AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"].allSatisfy({ !(environment[$0] ?? "").isEmpty }) {
            uses.insert("sts")
        }
        do {
            configuration = try await AWSConfiguration.resolve(
                environment: environment, regionOverride: region, endpointOverride: endpoint,
                overrides: overrides, transport: transport, uses: uses)
            retry = try self.retry ?? RetryPolicy.resolve(environment: environment)
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
}

/// The AWS configuration (region, endpoints) could not be resolved.
public struct AWSConfigurationStoreError: CarbonStoreError {
    public var message: String
    public var kind: ErrorKind { .invalidInput }
    public var description: String { message }
}

extension StorageURI {
    /// The `sse` and `sse-kms-key-id` query keys, as the S3 client takes them.
    public var serverSideEncryption: ServerSideEncryption? {
        switch encryption {
        case nil: return nil
        case .s3: return .s3
        case .kms(let keyID): return .kms(keyID: keyID)
        }
    }
}
