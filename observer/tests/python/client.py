"""A client of the observer's gRPC API that is not ours: Python grpcio, with no generated
code and no .proto file. It lists the services by server reflection, checks health, and
calls GetFlows with filters and a time window, building every message from the
descriptors reflection returns. Prints one JSON object for the Rust test to check.

Usage: client.py HOST:PORT SINCE_SECONDS UNTIL_SECONDS
"""

import datetime
import json
import sys

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def rfc3339(seconds):
    """A time as protobuf's JSON mapping writes a Timestamp."""
    at = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def main():
    address, since, until = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    channel = grpc.insecure_channel(address)
    database = ProtoReflectionDescriptorDatabase(channel)
    services = sorted(database.get_services())
    pool = descriptor_pool.DescriptorPool(database)

    def message(name):
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))

    health = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service="observer.v1.Observer"), timeout=10
    )

    request_class = message("observer.v1.GetFlowsRequest")
    response_class = message("observer.v1.GetFlowsResponse")
    request = json_format.ParseDict(
        {
            "fromOldest": True,
            "allow": [{"namespace": ["db"], "label": ["app in (postgres)"]}],
            "deny": [{"state": ["active"]}],
            "since": rfc3339(since),
            "until": rfc3339(until),
        },
        request_class(),
        descriptor_pool=pool,
    )
    get_flows = channel.unary_stream(
        "/observer.v1.Observer/GetFlows",
        request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString,
    )
    flows = []
    for response in get_flows(request, timeout=10):
        event = json_format.MessageToDict(response, descriptor_pool=pool)
        if "flow" in event:
            flows.append(event["flow"]["flow"])

    refused = None
    try:
        bad = json_format.ParseDict(
            {"allow": [{"label": ["app in (web"]}]}, request_class(), descriptor_pool=pool
        )
        list(get_flows(bad, timeout=10))
    except grpc.RpcError as error:
        refused = {"code": error.code().name, "details": error.details()}

    print(
        json.dumps(
            {
                "services": services,
                "health": health_pb2.HealthCheckResponse.ServingStatus.Name(health.status),
                "flows": flows,
                "refused": refused,
            }
        )
    )


if __name__ == "__main__":
    main()
