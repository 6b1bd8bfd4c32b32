# medic's offline test image: nothing but a static busybox, since no image can be pulled here.
#
# Built by scripts/testenv.sh from a context it assembles in .testenv/busybox-context/:
#   bin/busybox      Debian's busybox-static
#   bin/<applet>     a symlink to busybox for every applet (sh, httpd, wget, nc, sleep, test, ...)
#   usr/bin, usr/sbin -> ../bin;  etc/passwd, etc/group (root, nobody);  tmp/ (1777);  www/index.html
#
#   docker run --rm medic-test/busybox:latest sh -c 'echo hi'
#   docker run -d --health-cmd 'test -f /tmp/healthy' --health-interval 1s medic-test/busybox:latest \
#       sh -c 'touch /tmp/healthy; exec httpd -f -p 8080 -h /www'
FROM scratch
COPY . /
ENV PATH=/bin
WORKDIR /
LABEL medic.test=true
CMD ["/bin/sh"]
