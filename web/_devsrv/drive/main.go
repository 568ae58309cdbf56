// Throwaway driver; deleted before hand-off.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/chromedp/chromedp"
)

func main() {
	base := os.Args[1]
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath("/usr/bin/chromium"),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("allow-loopback-in-peer-connection", true),
		chromedp.Flag("disable-features", "WebRtcHideLocalIpsWithMdns"),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.NoSandbox,
		chromedp.WindowSize(1280, 800),
	)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel2 := chromedp.NewContext(actx)
	defer cancel2()
	if err := chromedp.Do(ctx); err != nil {
		panic(err)
	}
	shot := func(name string) {
		b, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err == nil {
			os.WriteFile("/tmp/shots/"+name+".png", b, 0o644)
		}
	}
	step := func(name string, acts ...chromedp.Action[chromedp.Void]) {
		c, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		if err := chromedp.Do(c, acts...); err != nil {
			fmt.Println("FAIL", name, err)
			st, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify(window.__bridge && window.__bridge.state())+" "+document.body.innerText.slice(0,500)`))
			fmt.Println(st)
			shot("fail")
			os.Exit(1)
		}
		fmt.Println("ok", name)
	}
	step("load", chromedp.Navigate(base), chromedp.WaitVisible(chromedp.CSS(`[data-testid=signin-name]`)))
	shot("signin")
	step("signin", chromedp.SendKeys(chromedp.CSS(`[data-testid=signin-name]`), "alice"), chromedp.Click(chromedp.CSS(`[data-testid=signin-submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=room-join]`)))
	shot("rooms")
	step("prejoin", chromedp.Click(chromedp.CSS(`[data-testid=room-join]`)), chromedp.WaitEnabled(chromedp.CSS(`[data-testid=prejoin-join]`)), chromedp.Sleep(time.Second))
	shot("prejoin")
	step("join", chromedp.Click(chromedp.CSS(`[data-testid=prejoin-join]`)), chromedp.WaitVisible(chromedp.CSS(`[data-testid=view-call]`)))
	time.Sleep(2 * time.Second)
	sdp, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(async()=>{const pc=window.__bridge.pc; const o = await pc.createOffer().catch(e=>({sdp:'ERR '+e})); return 'REMOTE\n'+(pc.remoteDescription?.sdp||'')+'\nLOCAL\n'+(pc.localDescription?.sdp||'')+'\nNEWOFFER\n'+o.sdp})()`, chromedp.EvalAwaitPromise))
	fmt.Println(sdp, err)
	for i := 0; i < 2; i++ {
		time.Sleep(time.Second)
		out, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify({s:window.__bridge.state().call, st: window.__bridge.lastStats})`))
		fmt.Println(out, err)
	}
	shot("call")
	tiles, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify([...document.querySelectorAll('[data-testid=tile]')].map(t=>({...t.dataset})))`))
	fmt.Println(tiles)
}
