"""The Open Inference Protocol over gRPC: stubs, the codec and the server beside the app.

A thin codec over `serving.v2.dataplane`: protobuf messages in, dataplane calls, protobuf
answers out; the dataplane's error kinds map to gRPC status codes.

May import: the runtime's base modules, `batcher`, `serving.v2.dataplane` (and what it
uses), `serving.metrics`. Never the REST codec (`serving.v2.rest`, `serving.v2.rest_codec`)
nor Starlette.
"""
