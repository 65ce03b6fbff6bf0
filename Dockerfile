# Rujukan image: one static binary on an empty base, run as an unprivileged
# user. Two ways to build it:
#
#   scripts/build-image            builds the binary on this machine with Go,
#                                  then the "image" stage (no registry needed)
#   docker build --target source .  compiles inside golang:1.26 (needs a
#                                  registry to pull that image)
#
# The "image" stage comes first so that a builder without a registry never
# reaches the golang stage.

# Stage "image": the binary and an empty tree prepared by scripts/build-image
# in build/image/.
FROM scratch AS image
COPY --chown=65534:65534 rootfs/ /
COPY rujukan /rujukan
USER 65534:65534
ENTRYPOINT ["/rujukan"]

# Stage "build": compile from source where golang:1.26 can be pulled.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/rujukan ./cmd/rujukan \
 && mkdir -p /out/rootfs/data /out/rootfs/keys /out/rootfs/out /out/rootfs/tmp

FROM scratch AS source
COPY --from=build --chown=65534:65534 /out/rootfs/ /
COPY --from=build /out/rujukan /rujukan
USER 65534:65534
ENTRYPOINT ["/rujukan"]
